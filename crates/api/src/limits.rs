//! Admission control, called first by the handlers that create work: per-client
//! rate limits (shared by every API instance through Redis,
//! `crates/queue/src/rate.rs`), a soft cap on pending tasks, and the bounded wait
//! for an analyze slot. Every refusal is `429 rate_limited` (or `503
//! analyze_busy`) with `Retry-After`.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use actix_web::{HttpRequest, http::header};
use mediapro_core::{Code, metrics::Metrics, settings::Settings, store::TaskStore, task::TaskStatus};
use mediapro_queue::{QueueClient, RateDecision, RateLimiter};
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// How long one process trusts its count of pending tasks (the cap is soft).
const PENDING_CACHE: Duration = Duration::from_secs(1);
const PENDING_RETRY_AFTER: u64 = 30;
const ANALYZE_BUSY_RETRY_AFTER: u64 = 5;

pub struct Limits {
    rate: RateLimiter,
    submissions_per_minute: u32,
    analyze_per_minute: u32,
    max_pending: u64,
    /// API keys configured: only then does a presented key name the client.
    keyed: bool,
    trusted_proxies: Vec<IpAddr>,
    /// (when counted, pending tasks counted since, this process's own submissions included).
    pending: Mutex<Option<(Instant, u64)>>,
    analyze_slots: Arc<Semaphore>,
    analyze_waiting: AtomicUsize,
    analyze_queue: usize,
    analyze_wait: Duration,
    /// Refusals are counted by limit (`mediapro_rate_limited_total`).
    metrics: Metrics,
}

impl Limits {
    pub fn new(
        settings: &Settings,
        queue: Arc<QueueClient>,
        analyze_slots: Arc<Semaphore>,
        metrics: Metrics,
    ) -> Self {
        Self {
            rate: RateLimiter::new(queue),
            submissions_per_minute: settings.limits.submissions_per_minute,
            analyze_per_minute: settings.limits.analyze_per_minute,
            max_pending: settings.limits.max_pending_tasks,
            keyed: !settings.security.api_keys.is_empty(),
            trusted_proxies: settings.server.trusted_proxies.iter().filter_map(|p| p.parse().ok()).collect(),
            pending: Mutex::new(None),
            analyze_slots,
            analyze_waiting: AtomicUsize::new(0),
            analyze_queue: settings.limits.analyze_queue,
            analyze_wait: settings.analyze_timeout(),
            metrics,
        }
    }

    /// Download, process, upload, retry: the client's rate, then the pending cap.
    pub async fn check_submission(&self, req: &HttpRequest, store: &TaskStore) -> Result<(), ApiError> {
        self.check_rate("submit", req, self.submissions_per_minute).await?;
        self.check_pending(store).await
    }

    pub async fn check_analyze(&self, req: &HttpRequest) -> Result<(), ApiError> {
        self.check_rate("analyze", req, self.analyze_per_minute).await
    }

    async fn check_rate(
        &self,
        bucket: &'static str,
        req: &HttpRequest,
        per_minute: u32,
    ) -> Result<(), ApiError> {
        if per_minute == 0 {
            return Ok(());
        }
        let client = self.client_id(req);
        match self.rate.check(bucket, &client, per_minute).await {
            RateDecision::Allowed => Ok(()),
            RateDecision::Limited { retry_after } => {
                self.metrics.rate_limited(bucket);
                let secs = retry_after.as_millis().div_ceil(1000).max(1) as u64;
                let what = if bucket == "analyze" { "analyze calls" } else { "submissions" };
                Err(ApiError::new(
                    Code::RateLimited,
                    format!("too many {what} (limit {per_minute} a minute); retry in {secs} s"),
                )
                .with_retry_after(secs))
            }
        }
    }

    /// A soft cap: the count is re-read at most once a second per process, and
    /// this process's own admissions are added to it meanwhile.
    async fn check_pending(&self, store: &TaskStore) -> Result<(), ApiError> {
        if self.max_pending == 0 {
            return Ok(());
        }
        let mut cached = self.pending.lock().await;
        let count = match *cached {
            Some((at, n)) if at.elapsed() < PENDING_CACHE => n,
            _ => match store.count_with_status(&[TaskStatus::Pending]).await {
                Ok(n) => {
                    let n = u64::try_from(n).unwrap_or_default();
                    *cached = Some((Instant::now(), n));
                    n
                }
                // The submission itself will meet the store's 503.
                Err(e) => {
                    tracing::warn!(error = %e, "cannot count pending tasks; submission allowed");
                    return Ok(());
                }
            },
        };
        if count >= self.max_pending {
            self.metrics.rate_limited("pending");
            return Err(ApiError::new(
                Code::RateLimited,
                format!("too many pending tasks ({count}); try later"),
            )
            .with_retry_after(PENDING_RETRY_AFTER));
        }
        if let Some((_, n)) = cached.as_mut() {
            *n += 1;
        }
        Ok(())
    }

    /// One of the analyze slots, waiting (at most the analyze timeout) only while
    /// fewer than `limits.analyze_queue` requests already wait.
    pub async fn analyze_slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        if let Ok(permit) = self.analyze_slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let busy = || {
            self.metrics.rate_limited("analyze_busy");
            ApiError::new(Code::AnalyzeBusy, "every analyze slot is busy; try again shortly")
                .with_retry_after(ANALYZE_BUSY_RETRY_AFTER)
        };
        if self.analyze_waiting.fetch_add(1, Ordering::SeqCst) >= self.analyze_queue {
            self.analyze_waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(busy());
        }
        // Decrements even when the request is dropped while it waits.
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _waiting = Waiting(&self.analyze_waiting);
        match tokio::time::timeout(self.analyze_wait, self.analyze_slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(ApiError::internal("analyze slots closed")),
            Err(_) => Err(busy()),
        }
    }

    /// The client a limit applies to: its API key (as a SHA-256 prefix, never the
    /// key) when keys are configured, else its IP address.
    fn client_id(&self, req: &HttpRequest) -> String {
        if self.keyed
            && let Some(key) = presented_key(req)
        {
            let digest = Sha256::digest(key.as_bytes());
            return format!("key:{}", &hex::encode(digest)[..16]);
        }
        let peer = req.peer_addr().map(|a| a.ip());
        let forwarded = req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok());
        match client_ip(peer, forwarded, &self.trusted_proxies) {
            Some(ip) => format!("ip:{ip}"),
            None => "ip:unknown".into(),
        }
    }
}

/// The key as the auth middleware (`crates/api/src/auth.rs`) reads it.
fn presented_key(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| req.headers().get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

/// The peer, unless it is a trusted proxy: then the right-most `X-Forwarded-For`
/// entry that is not itself a trusted proxy (entries further left are whatever
/// the client wrote).
fn client_ip(peer: Option<IpAddr>, forwarded: Option<&str>, trusted: &[IpAddr]) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let Some(list) = forwarded else { return Some(peer) };
    let mut last = peer;
    for hop in list.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => last = ip,
            Ok(ip) => return Some(ip),
            Err(_) => return Some(last),
        }
    }
    Some(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        let xff = Some("6.6.6.6, 203.0.113.7, 10.0.0.2");
        // An untrusted peer cannot claim another address.
        assert_eq!(client_ip(Some(ip("198.51.100.1")), xff, &trusted), Some(ip("198.51.100.1")));
        // Through trusted proxies: the right-most untrusted hop, not the spoofable left end.
        assert_eq!(client_ip(Some(ip("10.0.0.1")), xff, &trusted), Some(ip("203.0.113.7")));
        assert_eq!(client_ip(Some(ip("10.0.0.1")), None, &trusted), Some(ip("10.0.0.1")));
        assert_eq!(client_ip(Some(ip("10.0.0.1")), Some("junk"), &trusted), Some(ip("10.0.0.1")));
        assert_eq!(client_ip(Some(ip("10.0.0.1")), xff, &[]), Some(ip("10.0.0.1")));
    }
}
