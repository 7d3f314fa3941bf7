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

#[cfg(test)]
mod tests {
    use std::{
        io,
        sync::{Arc, Mutex},
    };

    use super::*;

    /// What the fmt layer writes, kept for the test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_timed_job_logs_its_steps_in_order_and_marks_elsewhere_do_nothing() {
        mark("outside");
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("mediapro_worker::timing=debug"))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let id = Uuid::new_v4();
        let out = timed(Some(id), async {
            mark("claim");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            mark("yt-dlp");
            7
        })
        .await;
        assert_eq!(out, 7);
        let log = String::from_utf8(captured.0.lock().expect("not poisoned").clone()).expect("utf-8");
        let line =
            log.lines().find(|l| l.contains("job steps")).unwrap_or_else(|| panic!("no line in {log:?}"));
        assert!(line.contains(&id.to_string()), "{line}");
        let steps = line.split("steps=").nth(1).expect("steps field");
        let names: Vec<&str> = steps.split(',').map(|s| s.split('=').next().unwrap_or_default()).collect();
        assert_eq!(names, ["claim", "yt-dlp"], "{line}");
        let ytdlp: f64 = steps
            .split(',')
            .nth(1)
            .and_then(|s| s.split('=').nth(1))
            .and_then(|v| v.parse().ok())
            .expect("ms");
        assert!(ytdlp >= 20.0, "{line}");
    }

    #[test]
    fn milliseconds_keep_one_decimal() {
        assert_eq!(ms(1_234_567), "1234.5");
        assert_eq!(ms(999), "0.9");
    }
}
