//! Where a job's time goes: the wall time of each step of one job (claim, event,
//! folder, egress proxy, the tool run, verification, settling …), logged as one
//! line when the job ends, at debug level under the target
//! `mediapro_worker::timing` (`RUST_LOG=info,mediapro_worker::timing=debug`;
//! `bench/idle_cpu.py` reads it):
//!
//! ```text
//! DEBUG job steps task_id=… total_ms=1234.5 steps=claim=2.1,event=0.6,folder=0.3,…
//! ```
//!
//! The handlers record steps with [`mark`] into a recorder the job's future
//! carries ([`timed`]). With the target disabled there is no recorder and a mark
//! is one look-up of a task-local value.

use std::{cell::RefCell, fmt::Write as _, future::Future, time::Instant};

use uuid::Uuid;

const TARGET: &str = "mediapro_worker::timing";

tokio::task_local! {
    static STEPS: RefCell<Steps>;
}

struct Steps {
    last: Instant,
    steps: Vec<(&'static str, u128)>,
}

/// Runs `job` with a step recorder when the timing log is on, and logs its steps
/// when it ends.
pub async fn timed<T>(task_id: Option<Uuid>, job: impl Future<Output = T>) -> T {
    if !tracing::enabled!(target: TARGET, tracing::Level::DEBUG) {
        return job.await;
    }
    let start = Instant::now();
    let recorder = RefCell::new(Steps { last: start, steps: Vec::with_capacity(16) });
    let (out, steps) = STEPS
        .scope(recorder, async {
            let out = job.await;
            (out, STEPS.with(|s| std::mem::take(&mut s.borrow_mut().steps)))
        })
        .await;
    let mut line = String::new();
    for (i, (step, micros)) in steps.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(line, "{sep}{step}={}", ms(*micros));
    }
    let total = ms(start.elapsed().as_micros());
    tracing::debug!(target: TARGET, task_id = ?task_id, total_ms = %total, steps = %line, "job steps");
    out
}

fn ms(micros: u128) -> String {
    format!("{}.{}", micros / 1000, (micros % 1000) / 100)
}

/// Ends the current step: the time since the previous mark (or the job's start)
/// is recorded as `step`.
pub fn mark(step: &'static str) {
    let _ = STEPS.try_with(|s| {
        let mut s = s.borrow_mut();
        let now = Instant::now();
        let took = now.duration_since(s.last).as_micros();
        s.last = now;
        s.steps.push((step, took));
    });
}
