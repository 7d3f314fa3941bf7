//! `GET /api/events`: every task change as a server-sent event (`event: task`,
//! `id:` the Redis stream entry id, `data:` the task JSON as `GET /api/tasks/{id}`
//! answers it), filtered by `task_id`, `kind` and `status` (comma-separated).
//! A client that reconnects with `Last-Event-ID` gets the events it missed
//! replayed from the stream; if they were trimmed away (or it fell behind), it
//! gets one `event: snapshot` and should list the tasks again. A keep-alive
//! comment goes out every 15 s. Events come from `crates/queue/src/events.rs`.

use std::{collections::HashSet, sync::Arc, time::Duration};

use actix_web::{HttpRequest, Responder, web};
use actix_web_lab::sse;
use futures::{StreamExt, stream};
use mediapro_core::{Code, metrics::Metrics, task::TaskKind, task::TaskStatus};
use mediapro_queue::events::{TaskEvent, id_key};
use serde::Deserialize;
use tokio_stream::wrappers::{BroadcastStream, errors::BroadcastStreamRecvError};

use crate::{error::ApiError, state::AppState};

/// Most events replayed to one reconnecting client.
const REPLAY_LIMIT: usize = 5_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only this task's events.
    task_id: Option<String>,
    /// Comma-separated kinds (`download`, `process`).
    kind: Option<String>,
    /// Comma-separated statuses.
    status: Option<String>,
}

#[derive(Debug, Default)]
struct Filter {
    task_id: Option<String>,
    kinds: HashSet<String>,
    statuses: HashSet<String>,
}

impl Filter {
    fn parse(q: EventQuery) -> Result<Self, ApiError> {
        let list = |raw: Option<String>, what: &str, valid: &dyn Fn(&str) -> bool| {
            let items: HashSet<String> = raw
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            match items.iter().find(|i| !valid(i)) {
                Some(bad) => {
                    Err(ApiError::new(Code::InvalidFilter, format!("{what}: unknown value '{bad}'")))
                }
                None => Ok(items),
            }
        };
        Ok(Filter {
            task_id: q.task_id.filter(|t| !t.is_empty()),
            kinds: list(q.kind, "kind", &|k| k.parse::<TaskKind>().is_ok())?,
            statuses: list(q.status, "status", &|s| s.parse::<TaskStatus>().is_ok())?,
        })
    }

    fn matches(&self, e: &TaskEvent) -> bool {
        self.task_id.as_ref().is_none_or(|t| *t == e.task_id)
            && (self.kinds.is_empty() || self.kinds.contains(&e.kind))
            && (self.statuses.is_empty() || self.statuses.contains(&e.status))
    }
}

/// One open stream, counted in `mediapro_event_stream_clients` while it lives.
struct StreamClient(Metrics);

impl StreamClient {
    fn new(metrics: Metrics) -> Self {
        metrics.event_clients(1.0);
        Self(metrics)
    }
}

impl Drop for StreamClient {
    fn drop(&mut self) {
        self.0.event_clients(-1.0);
    }
}

fn task_event(e: &TaskEvent) -> sse::Event {
    sse::Event::Data(sse::Data::new(e.json.clone()).event("task").id(e.id.clone()))
}

fn snapshot() -> sse::Event {
    sse::Event::Data(sse::Data::new("{}").event("snapshot"))
}

/// Task events (server-sent events)
///
/// Every task change: `event: task`, `id:` the stream entry id, `data:` the task JSON
/// as `GET /api/tasks/{task_id}` answers it. Reconnecting with `Last-Event-ID`
/// replays what was missed while the stream still holds it, else one
/// `event: snapshot` (list the tasks again). A keep-alive comment every 15 s. The
/// stream does not end.
#[utoipa::path(
    get,
    path = "/api/events",
    tag = "tasks",
    params(
        EventQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The `id:` of the last event received, to replay what was missed"),
    ),
    responses((status = 200, description = "The event stream", content_type = "text/event-stream", body = String))
)]
pub async fn events(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<EventQuery>,
) -> Result<impl Responder, ApiError> {
    let filter = Arc::new(Filter::parse(query.into_inner())?);
    // Subscribe before reading the replay, so nothing falls between the two.
    let live = BroadcastStream::new(state.events.subscribe());
    let last_id = req.headers().get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut first: Vec<sse::Event> = Vec::new();
    let mut replayed_up_to = None;
    if let Some(last) = last_id.filter(|l| id_key(l).is_some()) {
        match state.queue.events_after(&last, REPLAY_LIMIT).await {
            Ok((missed, true)) if missed.len() < REPLAY_LIMIT => {
                replayed_up_to = missed.last().and_then(|e| id_key(&e.id)).or(id_key(&last));
                first.extend(missed.iter().filter(|e| filter.matches(e)).map(task_event));
            }
            _ => first.push(snapshot()),
        }
    }
    let client = StreamClient::new(state.metrics.clone());
    let live = live.filter_map(move |item| {
        // Lives as long as the stream: dropped when the client goes.
        let _client = &client;
        let filter = filter.clone();
        async move {
            match item {
                // Already sent in the replay.
                Ok(e) if replayed_up_to.is_some_and(|r| id_key(&e.id).is_some_and(|k| k <= r)) => None,
                Ok(e) => filter.matches(&e).then(|| task_event(&e)),
                // This client fell behind the broadcast: it must re-list.
                Err(BroadcastStreamRecvError::Lagged(_)) => Some(snapshot()),
            }
        }
    });
    let stream = stream::iter(first).chain(live);
    Ok(sse::Sse::from_infallible_stream(stream).with_keep_alive(Duration::from_secs(15)))
}
