//! Task events across hosts: every task change is appended (best effort) to one
//! bounded Redis stream, `{namespace}:events`, as the task's client JSON. Each API
//! instance runs one reader that follows the stream and fans events out to its
//! event-stream clients, so a client connected to any API sees tasks run by
//! workers on any host. A client that reconnects with `Last-Event-ID` gets the
//! missed entries replayed from the stream while they are still in it.

use std::{sync::Arc, time::Duration};

use serde::Deserialize;
use tokio::sync::broadcast;

use crate::{QueueClient, QueueError, bounded, connect};
use mediapro_core::settings::RedisSettings;

/// Entries kept in the stream (approximately): enough to replay a reconnect.
pub const STREAM_LENGTH: usize = 10_000;

/// One task change, as it travels to event-stream clients.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEvent {
    /// The stream entry id (`<ms>-<seq>`), the SSE `id:`.
    pub id: String,
    pub task_id: String,
    pub kind: String,
    pub status: String,
    /// The task JSON, as `GET /api/tasks/{id}` answers it.
    pub json: String,
}

#[derive(Deserialize)]
struct Head {
    task_id: String,
    kind: String,
    status: String,
}

impl TaskEvent {
    fn from_entry(id: String, json: String) -> Option<Self> {
        let head: Head = serde_json::from_str(&json).ok()?;
        Some(TaskEvent { id, task_id: head.task_id, kind: head.kind, status: head.status, json })
    }
}

/// Stream ids compare as (milliseconds, sequence).
pub fn id_key(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

fn stream_key(settings: &RedisSettings) -> String {
    format!("{}:events", settings.namespace)
}

type Entries = Vec<(String, Vec<(String, String)>)>;

fn events_of(entries: Entries) -> Vec<TaskEvent> {
    entries
        .into_iter()
        .filter_map(|(id, fields)| {
            let json = fields.into_iter().find(|(k, _)| k == "task").map(|(_, v)| v)?;
            TaskEvent::from_entry(id, json)
        })
        .collect()
}

impl QueueClient {
    /// Appends a task change. Best effort: an event that cannot be written is
    /// logged and dropped; the task store stays the truth.
    pub async fn publish_event(&self, task_json: &str) {
        let result = async {
            let mut conn = self.queues().await?.conn.clone();
            let mut cmd = redis::cmd("XADD");
            cmd.arg(stream_key(&self.settings))
                .arg("MAXLEN")
                .arg("~")
                .arg(STREAM_LENGTH)
                .arg("*")
                .arg("task")
                .arg(task_json);
            bounded(self.deadline(), cmd.query_async::<String>(&mut conn)).await
        }
        .await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "task event not published");
        }
    }

    /// The entries after `last_id`, oldest first, and whether the stream still
    /// reaches back to `last_id` (if not, some events were trimmed away).
    pub async fn events_after(
        &self,
        last_id: &str,
        limit: usize,
    ) -> Result<(Vec<TaskEvent>, bool), QueueError> {
        let mut conn = self.queues().await?.conn.clone();
        let key = stream_key(&self.settings);
        let oldest: Entries = bounded(
            self.deadline(),
            redis::cmd("XRANGE").arg(&key).arg("-").arg("+").arg("COUNT").arg(1).query_async(&mut conn),
        )
        .await?;
        let covered = match (oldest.first().and_then(|(id, _)| id_key(id)), id_key(last_id)) {
            (Some(first), Some(last)) => first <= last,
            // An empty stream, or an id we never gave out.
            _ => false,
        };
        let entries: Entries = bounded(
            self.deadline(),
            redis::cmd("XRANGE")
                .arg(&key)
                .arg(format!("({last_id}"))
                .arg("+")
                .arg("COUNT")
                .arg(limit)
                .query_async(&mut conn),
        )
        .await?;
        Ok((events_of(entries), covered))
    }
}

/// Follows the stream on a connection of its own (a blocking `XREAD` must not
/// hold up the shared one) and broadcasts every new event in this process.
pub fn spawn_event_reader(settings: RedisSettings, capacity: usize) -> broadcast::Sender<Arc<TaskEvent>> {
    let (tx, _) = broadcast::channel(capacity);
    let sender = tx.clone();
    tokio::spawn(async move {
        let key = stream_key(&settings);
        let mut last = "$".to_owned();
        loop {
            let mut conn = match connect(&settings).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "event reader: Redis not reachable");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            loop {
                let reply: Result<Option<Vec<(String, Entries)>>, _> = redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(500)
                    .arg("BLOCK")
                    .arg(2000)
                    .arg("STREAMS")
                    .arg(&key)
                    .arg(&last)
                    .query_async(&mut conn)
                    .await;
                match reply {
                    Ok(Some(streams)) => {
                        for (_, entries) in streams {
                            // Nobody listening: only move past the entries (a client
                            // that connects later replays what it missed by id).
                            if sender.receiver_count() == 0 {
                                if let Some((id, _)) = entries.last() {
                                    last.clone_from(id);
                                }
                                continue;
                            }
                            for event in events_of(entries) {
                                last.clone_from(&event.id);
                                // No receiver is fine: nobody is listening right now.
                                let _ = sender.send(Arc::new(event));
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "event reader: reconnecting");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        break;
                    }
                }
            }
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_order_numerically() {
        assert!(id_key("1700000000000-10") > id_key("1700000000000-9"));
        assert!(id_key("1700000000001-0") > id_key("1700000000000-99"));
        assert_eq!(id_key("nope"), None);
    }

    #[test]
    fn entries_become_events_with_their_filter_fields() {
        let json = r#"{"task_id":"t1","kind":"download","status":"pending","progress":0}"#;
        let events = events_of(vec![
            ("1-0".into(), vec![("task".into(), json.into())]),
            ("2-0".into(), vec![("other".into(), "x".into())]),
        ]);
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].kind.as_str(), events[0].status.as_str()), ("download", "pending"));
    }
}
