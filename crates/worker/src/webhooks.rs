//! The webhook deliverer: a keeper loop that sends the store's outbox messages.
//!
//! Every worker runs one; they share the outbox. Each pass reads the due messages,
//! leases each with a compare-and-set (so one deliverer makes each attempt, and a
//! deliverer that dies mid-attempt only delays the message until the lease ends),
//! POSTs it signed per Standard Webhooks (`mediapro_core::webhooks`), and records
//! the attempt: a 2xx delivers it, anything else schedules the next attempt by
//! `WebhookRetryPolicy` (full jitter, for up to `webhooks.give_up_after_seconds`).
//!
//! Every attempt goes through a fresh egress proxy (`crates/egress`), like a
//! download: the receiver's address is checked against the egress policy at connect
//! time (also after DNS), and a refusal is recorded as the attempt's error.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use mediapro_core::{
    retry::{Decision, WebhookRetryPolicy},
    store::{AfterAttempt, AttemptResult, DueDelivery, StoreError, micros},
    task::now,
    webhooks::WebhookSecret,
};

use crate::context::JobContext;

/// Messages read per pass, and attempts made at once.
const BATCH: i64 = 64;
const CONCURRENCY: usize = 8;

/// What is past the attempt's own timeout before another deliverer may take over
/// a message whose attempt never reported back.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

pub async fn deliver_loop(ctx: &JobContext) {
    let every = Duration::from_millis(ctx.settings.webhooks.poll_interval_ms);
    loop {
        tokio::time::sleep(every).await;
        match deliver_due(ctx).await {
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "webhook delivery pass failed"),
        }
    }
}

/// One pass: attempts every due message this deliverer could lease; returns how
/// many attempts were made.
pub async fn deliver_due(ctx: &JobContext) -> Result<usize, StoreError> {
    let due = ctx.store().due_deliveries(BATCH).await?;
    let made = futures::stream::iter(due)
        .map(|message| async move {
            match attempt(ctx, &message).await {
                Ok(made) => made,
                Err(e) => {
                    tracing::warn!(webhook_id = %message.webhook_id, error = %e, "webhook attempt not recorded");
                    false
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .filter(|made| std::future::ready(*made))
        .count()
        .await;
    Ok(made)
}

/// Leases `message`, sends it once and records the result; `false` when another
/// deliverer had it.
async fn attempt(ctx: &JobContext, message: &DueDelivery) -> Result<bool, StoreError> {
    let webhooks = &ctx.settings.webhooks;
    let timeout = Duration::from_secs(webhooks.timeout_seconds);
    let lease = i64::try_from((timeout + LEASE_MARGIN).as_micros()).unwrap_or(i64::MAX);
    if !ctx.store().lease_delivery(message, micros(now()) + lease).await? {
        return Ok(false);
    }
    let n = message.attempts + 1;
    let started = micros(now());
    let clock = Instant::now();
    let Some(secret) = webhooks.secret_for(message.target(), &message.url) else {
        // Retrying cannot help until the settings change: give up now.
        let why = "cannot be signed: its endpoint or webhooks.signing_secret is no longer configured";
        let result =
            AttemptResult { at: started, status_code: None, error: Some(why.into()), duration_ms: 0 };
        tracing::warn!(webhook_id = %message.webhook_id, "webhook {why}");
        ctx.store().record_delivery_attempt(&message.webhook_id, n, &result, AfterAttempt::GaveUp).await?;
        return Ok(true);
    };
    let (status_code, error) = send(ctx, message, secret, timeout).await;
    let result = AttemptResult {
        at: started,
        status_code,
        error,
        duration_ms: i64::try_from(clock.elapsed().as_millis()).unwrap_or(i64::MAX),
    };
    let delivered = status_code.is_some_and(|c| (200..300).contains(&c));
    let after = if delivered {
        AfterAttempt::Delivered
    } else {
        let age = Duration::from_micros(u64::try_from(micros(now()) - message.created_at).unwrap_or(0));
        match WebhookRetryPolicy::from_settings(webhooks).decide(n, age) {
            Decision::RetryAfter(delay) => {
                AfterAttempt::RetryAt(micros(now()) + i64::try_from(delay.as_micros()).unwrap_or(i64::MAX))
            }
            Decision::GiveUp => AfterAttempt::GaveUp,
        }
    };
    if delivered {
        tracing::info!(webhook_id = %message.webhook_id, task_id = %message.task_id, attempt = n, "webhook delivered");
    } else {
        tracing::warn!(
            webhook_id = %message.webhook_id, task_id = %message.task_id, attempt = n,
            status = ?result.status_code, error = ?result.error, next = ?after, "webhook attempt failed"
        );
    }
    ctx.store().record_delivery_attempt(&message.webhook_id, n, &result, after).await?;
    Ok(true)
}

/// One signed POST through a fresh egress proxy: the receiver's status, or why
/// there is none.
async fn send(
    ctx: &JobContext,
    message: &DueDelivery,
    secret: &WebhookSecret,
    timeout: Duration,
) -> (Option<u16>, Option<String>) {
    let proxy = match ctx.egress.start_proxy().await {
        Ok(proxy) => proxy,
        Err(e) => return (None, Some(format!("egress proxy could not start: {e}"))),
    };
    let client = reqwest::Proxy::all(proxy.url()).and_then(|p| {
        reqwest::Client::builder()
            .proxy(p)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
    });
    let client = match client {
        Ok(client) => client,
        Err(e) => return (None, Some(format!("HTTP client: {}", e.without_url()))),
    };
    let timestamp = now().unix_timestamp();
    let signature = secret.sign(&message.webhook_id, timestamp, message.payload.as_bytes());
    let sent = client
        .post(&message.url)
        .header("content-type", "application/json")
        .header("user-agent", concat!("mediapro-webhooks/", env!("CARGO_PKG_VERSION")))
        .header("webhook-id", &message.webhook_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .header("webhook-event", &message.event)
        .body(message.payload.clone())
        .send()
        .await;
    // The guard's refusal is the reason, whatever the proxy answered the client.
    if let Some(refused) = proxy.first_refusal_reason() {
        return (None, Some(refused));
    }
    match sent {
        // The proxy's own answer (the receiver could not be reached): its text says why.
        Ok(response) if response.headers().contains_key(mediapro_egress::PROXY_STATUS) => {
            let why = response.text().await.unwrap_or_default();
            (None, Some(why.chars().take(300).collect()))
        }
        Ok(response) => (Some(response.status().as_u16()), None),
        Err(e) if e.is_timeout() => (None, Some(format!("no answer within {} s", timeout.as_secs()))),
        Err(e) => (None, Some(error_chain(&e.without_url()))),
    }
}

/// An error and its causes on one line (reqwest's own message is often just
/// "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
