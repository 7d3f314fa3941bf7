//! Signed webhooks: which task events go where, and how a message is signed.
//!
//! Delivery follows the Standard Webhooks spec (<https://www.standardwebhooks.com>):
//! every message has a `webhook-id` (the same on every retry of that message), a
//! `webhook-timestamp` (unix seconds of the attempt) and a `webhook-signature`
//! `v1,<base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}"))>`, where the secret is
//! the base64 part of `whsec_<base64>`. The body is the task JSON of
//! `GET /api/tasks/{id}` ([`crate::view::TaskView`]); the event type travels in the
//! `webhook-event` header.
//!
//! Messages are not sent from here: the store writes them to a durable outbox in the
//! same transaction as the task's final status (`store/outbox.rs`), and the worker's
//! deliverer (`crates/worker/src/webhooks.rs`) sends them through the egress guard,
//! retrying with [`crate::retry::WebhookRetryPolicy`].

use base64::{Engine as _, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use strum::{EnumIter, IntoStaticStr};

use crate::{settings::WebhookSettings, task::TaskStatus};

/// A task event a webhook can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, EnumIter, IntoStaticStr)]
pub enum WebhookEvent {
    #[serde(rename = "task.completed")]
    #[strum(serialize = "task.completed")]
    TaskCompleted,
    #[serde(rename = "task.failed")]
    #[strum(serialize = "task.failed")]
    TaskFailed,
    #[serde(rename = "task.cancelled")]
    #[strum(serialize = "task.cancelled")]
    TaskCancelled,
    /// Opt-in: only endpoints that list it get it.
    #[serde(rename = "task.progress")]
    #[strum(serialize = "task.progress")]
    TaskProgress,
}

impl WebhookEvent {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The event a task reaching `status` raises (final statuses only).
    pub fn for_status(status: TaskStatus) -> Option<Self> {
        match status {
            TaskStatus::Completed => Some(Self::TaskCompleted),
            TaskStatus::Failed => Some(Self::TaskFailed),
            TaskStatus::Cancelled => Some(Self::TaskCancelled),
            _ => None,
        }
    }

    /// A submission's `callback_url` gets the final events, not progress.
    pub fn goes_to_callbacks(self) -> bool {
        self != Self::TaskProgress
    }
}

/// Prefix of a signing secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// A signing secret, `whsec_<base64 of 24 to 64 bytes>`. `Debug` and `Serialize`
/// never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("does not start with whsec_")]
    Prefix,
    #[error("is not whsec_ followed by base64")]
    Base64,
    #[error("must decode to 24 to 64 bytes")]
    Length,
}

impl WebhookSecret {
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let b64 = text.trim().strip_prefix(SECRET_PREFIX).ok_or(SecretError::Prefix)?;
        let bytes = STANDARD.decode(b64).map_err(|_| SecretError::Base64)?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(SecretError::Length);
        }
        Ok(Self(bytes))
    }

    /// The Standard Webhooks signature header value of one attempt.
    pub fn sign(&self, webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC takes a key of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts any key length");
        mac.update(webhook_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

impl Serialize for WebhookSecret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for WebhookSecret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        // The message names the problem, never the secret.
        WebhookSecret::parse(&text).map_err(|e| serde::de::Error::custom(format!("webhook secret {e}")))
    }
}

/// A fresh message id (`msg_<ulid>`), one per message, kept across its retries.
pub fn new_message_id() -> String {
    format!("msg_{}", ulid::Ulid::generate())
}

/// Who a queued message is for: a submission's `callback_url` (signed with
/// `webhooks.signing_secret`) or a configured endpoint (its own secret, else that one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Target {
    Callback,
    Endpoint,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "callback" => Some(Self::Callback),
            "endpoint" => Some(Self::Endpoint),
            _ => None,
        }
    }
}

/// Where a message is: waiting (or being tried), delivered (a 2xx), or failed
/// (no 2xx within `webhooks.give_up_after_seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, IntoStaticStr, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// Which configured endpoints get which events; the store writes one outbox row
/// per endpoint (plus the task's callback) when an event happens.
#[derive(Debug, Clone, Default)]
pub struct WebhookRoutes {
    endpoints: Vec<(String, Vec<WebhookEvent>)>,
}

impl WebhookRoutes {
    pub fn from_settings(settings: &WebhookSettings) -> Self {
        Self { endpoints: settings.endpoints.iter().map(|e| (e.url.clone(), e.events.clone())).collect() }
    }

    /// URLs of the endpoints subscribed to `event`.
    pub fn endpoints_for(&self, event: WebhookEvent) -> impl Iterator<Item = &str> {
        self.endpoints.iter().filter(move |(_, events)| events.contains(&event)).map(|(url, _)| url.as_str())
    }

    pub fn wants(&self, event: WebhookEvent) -> bool {
        self.endpoints_for(event).next().is_some()
    }
}

/// A URL as the deliveries list shows it: the query (which may carry a token) is
/// masked.
pub fn masked_url(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks reference libraries.
    #[test]
    fn the_signature_matches_the_specs_example() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_are_checked_and_never_shown() {
        assert_eq!(WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), Err(SecretError::Prefix));
        assert_eq!(WebhookSecret::parse("whsec_!!!"), Err(SecretError::Base64));
        assert_eq!(WebhookSecret::parse("whsec_c2hvcnQ="), Err(SecretError::Length));
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
        assert!(!format!("{secret:?}").contains("MfKQ"));
        assert_eq!(serde_json::to_string(&secret).expect("json"), "\"<redacted>\"");
    }

    #[test]
    fn events_and_urls() {
        assert_eq!(WebhookEvent::for_status(TaskStatus::Failed), Some(WebhookEvent::TaskFailed));
        assert_eq!(WebhookEvent::for_status(TaskStatus::Pending), None);
        assert_eq!(WebhookEvent::TaskProgress.as_str(), "task.progress");
        assert_eq!(
            serde_json::from_str::<WebhookEvent>("\"task.cancelled\"").ok(),
            Some(WebhookEvent::TaskCancelled)
        );
        assert_eq!(masked_url("http://127.0.0.1:9/hook?token=abc"), "http://127.0.0.1:9/hook?…");
        assert_eq!(masked_url("http://127.0.0.1:9/hook"), "http://127.0.0.1:9/hook");
    }
}
