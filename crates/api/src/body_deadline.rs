//! Slow-body (slowloris) protection. actix bounds the time to read request
//! headers (`client_request_timeout`, set in `crates/api/src/startup.rs`) but not
//! the body: a client sending one byte every few seconds would hold a connection
//! and a handler forever. [`DeadlinePayload`] wraps a request's payload and fails
//! it when fewer than `limits.min_body_bytes_per_second × window` bytes arrive in
//! a window of `limits.body_read_timeout_seconds` (a stalled body delivers none);
//! [`limit_body_rate`] installs it on every request that has a body, so the JSON
//! extractor and the upload stream (`crates/api/src/routes/uploads.rs`) both see
//! the error and answer `408 request_timeout`, closing the connection.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use actix_web::{
    Error, HttpMessage,
    body::MessageBody,
    dev::{Payload, ServiceRequest, ServiceResponse},
    error::PayloadError,
    http::header,
    middleware::Next,
    web::{self, Bytes},
};
use futures::Stream;
use tokio::time::{Instant, Sleep};

use crate::state::AppState;

const TIMED_OUT: &str = "the request body stalled or arrived too slowly";

/// Whether a payload error is this module's deadline.
pub fn is_timeout(err: &PayloadError) -> bool {
    matches!(err, PayloadError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut)
}

/// A payload stream that errors out when it delivers fewer than `min_bytes` in
/// any window of `window` (counted from the first poll, window after window).
pub struct DeadlinePayload<S> {
    inner: S,
    window: Duration,
    min_bytes: u64,
    /// Armed on first poll.
    timer: Option<Pin<Box<Sleep>>>,
    in_window: u64,
    done: bool,
}

impl<S> DeadlinePayload<S> {
    pub fn new(inner: S, window: Duration, min_bytes_per_second: u64) -> Self {
        let per_window = u128::from(min_bytes_per_second) * window.as_millis() / 1000;
        let min_bytes = u64::try_from(per_window).unwrap_or(u64::MAX).max(1);
        Self { inner, window, min_bytes, timer: None, in_window: 0, done: false }
    }

    /// At the end of a window: fail if too little came, else start the next one.
    fn window_ended(&mut self) -> Result<(), PayloadError> {
        if self.in_window < self.min_bytes {
            self.done = true;
            tracing::info!(received = self.in_window, needed = self.min_bytes, "request body too slow");
            return Err(PayloadError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, TIMED_OUT)));
        }
        self.in_window = 0;
        if let Some(timer) = self.timer.as_mut() {
            timer.as_mut().reset(Instant::now() + self.window);
        }
        Ok(())
    }
}

impl<S> Stream for DeadlinePayload<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        let window = this.window;
        let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(window)));
        let expired = timer.as_mut().poll(cx).is_ready();
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.in_window += chunk.len() as u64;
                if expired && let Err(e) = this.window_ended() {
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(other) => {
                this.done = other.is_none();
                Poll::Ready(other)
            }
            Poll::Pending if expired => {
                if let Err(e) = this.window_ended() {
                    return Poll::Ready(Some(Err(e)));
                }
                // A fresh window: poll its timer so it wakes us.
                if let Some(timer) = this.timer.as_mut() {
                    let _ = timer.as_mut().poll(cx);
                }
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Middleware: wraps the payload of every request that declares a body.
pub async fn limit_body_rate(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let has_body = req.headers().get(header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0")
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    let limits = req
        .app_data::<web::Data<AppState>>()
        .map(|s| (s.settings.body_read_timeout(), s.settings.limits.min_body_bytes_per_second));
    if has_body && let Some((window, min_rate)) = limits {
        let inner = req.take_payload();
        let wrapped: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
            Box::pin(DeadlinePayload::new(inner, window, min_rate));
        req.set_payload(Payload::from(wrapped));
    }
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    fn chunks(
        rx: tokio::sync::mpsc::Receiver<Bytes>,
    ) -> impl Stream<Item = Result<Bytes, PayloadError>> + Unpin {
        Box::pin(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok(b), rx)) }))
    }

    const WINDOW: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn a_stalled_body_fails_after_one_window() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        // 30 bytes needed per 300 ms window.
        let mut body = DeadlinePayload::new(chunks(rx), WINDOW, 100);
        tx.send(Bytes::from_static(b"abc")).await.expect("send");
        let start = Instant::now();
        assert_eq!(body.next().await.expect("chunk").expect("ok"), "abc");
        let err = body.next().await.expect("an error").expect_err("times out");
        assert!(is_timeout(&err));
        let elapsed = start.elapsed();
        assert!(elapsed >= WINDOW && elapsed < WINDOW * 5, "{elapsed:?}");
        assert!(body.next().await.is_none());
    }

    #[tokio::test]
    async fn a_trickle_fails_and_a_steady_body_passes() {
        // One byte every 50 ms is 6 a window: too slow.
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let mut body = DeadlinePayload::new(chunks(rx), WINDOW, 100);
        tokio::spawn(async move {
            for _ in 0..40 {
                if tx.send(Bytes::from_static(b"x")).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let start = Instant::now();
        let mut got = 0;
        let err = loop {
            match body.next().await.expect("not the end") {
                Ok(b) => got += b.len(),
                Err(e) => break e,
            }
        };
        assert!(is_timeout(&err), "{err}");
        assert!(got < 30 && start.elapsed() < WINDOW * 5, "{got} bytes in {:?}", start.elapsed());

        // 40 bytes every 100 ms (120 a window) for a second, then the end.
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let mut body = DeadlinePayload::new(chunks(rx), WINDOW, 100);
        tokio::spawn(async move {
            for _ in 0..10 {
                tx.send(Bytes::from(vec![0u8; 40])).await.expect("send");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let mut total = 0;
        while let Some(chunk) = body.next().await {
            total += chunk.expect("a steady body passes").len();
        }
        assert_eq!(total, 400);
    }
}
