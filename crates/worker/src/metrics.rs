//! A worker's own metrics: the endpoint on `worker.metrics_bind` (a tiny HTTP/1
//! server answering `GET /metrics`, on the hyper the egress proxy already uses),
//! the busy/free slots of each queue, and when a job became due (its pick-up
//! delay). What is recorded, and under which names, is
//! `mediapro_core::metrics`; the job counters are recorded where an attempt
//! begins (`jobs/attempt.rs`) and ends (`jobs/outcome.rs`, `settle`).

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use apalis::prelude::{FromRequest, Task};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode, body::Incoming, header, server::conn::http1, service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use mediapro_core::task::TaskKind;
use mediapro_core::{jobs::JobPayload, metrics::Metrics};
use mediapro_queue::metrics::Registry;
use tokio::net::TcpListener;

/// A connection that sends nothing for this long is closed.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the endpoint on `bind`; returns the address it listens on.
pub async fn serve(bind: &str, registry: Registry) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let registry = registry.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| answer(req, registry.clone()));
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "metrics endpoint: connection failed");
                }
            });
        }
    });
    Ok(addr)
}

async fn answer(req: Request<Incoming>, registry: Registry) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = |status: StatusCode, content_type: &'static str, body: String| {
        let mut res = Response::new(Full::new(Bytes::from(body)));
        *res.status_mut() = status;
        res.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
        res
    };
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            response(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", registry.render())
        }
        (_, "/metrics") => response(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n".into()),
        _ => response(StatusCode::NOT_FOUND, "text/plain", "only /metrics is served here\n".into()),
    })
}

/// The job slots of one queue in this worker (its concurrency), counted while
/// the handler runs. Handed to the handler as apalis data, so the handler also
/// knows which queue its job came from.
#[derive(Clone)]
pub struct QueueSlots {
    pub queue: TaskKind,
    busy: Arc<AtomicUsize>,
    total: usize,
    metrics: Metrics,
}

impl QueueSlots {
    pub fn new(queue: TaskKind, total: usize, metrics: Metrics) -> Self {
        let slots = Self { queue, busy: Arc::default(), total, metrics };
        slots.metrics.worker_slots(queue.as_str(), 0, total);
        slots
    }

    /// Takes a slot until the returned guard is dropped.
    pub fn enter(&self) -> SlotGuard {
        let busy = self.busy.fetch_add(1, Ordering::SeqCst) + 1;
        self.metrics.worker_slots(self.queue.as_str(), busy, self.total);
        SlotGuard(self.clone())
    }
}

pub struct SlotGuard(QueueSlots);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let slots = &self.0;
        let busy = slots.busy.fetch_sub(1, Ordering::SeqCst).saturating_sub(1);
        slots.metrics.worker_slots(slots.queue.as_str(), busy, slots.total);
    }
}

/// When the job became due: the later of the moment its id was made (a ULID,
/// made right before the push: `task::new_job_id`) and the time a delayed
/// retry was scheduled to run.
#[derive(Debug, Clone, Copy)]
pub struct DueAt(pub Option<SystemTime>);

impl DueAt {
    /// Time since the job was due, if known (and not in the future).
    pub fn delay(self) -> Option<Duration> {
        SystemTime::now().duration_since(self.0?).ok()
    }
}

impl FromRequest<Task<JobPayload>> for DueAt {
    type Error = Infallible;

    async fn from_request(task: &Task<JobPayload>) -> Result<Self, Infallible> {
        let pushed =
            task.task_id().and_then(|id| id.to_string().parse::<ulid::Ulid>().ok()).map(|u| u.datetime());
        let run_at = task.run_at().map(|secs| UNIX_EPOCH + Duration::from_secs(secs));
        Ok(DueAt(pushed.max(run_at)))
    }
}
