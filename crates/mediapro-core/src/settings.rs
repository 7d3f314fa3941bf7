//! Typed settings shared by both binaries: built-in defaults → optional TOML file
//! (`mediapro.toml`, or the path in `MEDIAPRO_CONFIG`) → `MEDIAPRO__SECTION__KEY`
//! environment variables. The `Default` impls are the one source of defaults; they
//! are serialised as the first layer so a file or env var only overrides.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use crate::task::TaskKind;
use crate::webhooks::{Target, WebhookEvent, WebhookSecret};
use strum::IntoEnumIterator as _;

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct SettingsError(String);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub redis: RedisSettings,
    pub database: DatabaseSettings,
    pub storage: StorageSettings,
    pub security: SecuritySettings,
    pub limits: LimitSettings,
    pub worker: WorkerSettings,
    pub tools: ToolSettings,
    pub webhooks: WebhookSettings,
    pub subscriptions: SubscriptionSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address the API listens on.
    pub bind: String,
    /// Origins allowed by CORS; `*` allows any origin (the sketch's behaviour).
    pub cors_origins: Vec<String>,
    /// HTTP worker threads of the API; 0 = one per core.
    pub http_workers: usize,
    /// Reverse proxies (IP addresses) whose `X-Forwarded-For` is believed when the
    /// API tells clients apart for rate limits; empty = the peer address is the client.
    pub trusted_proxies: Vec<String>,
    /// Record metrics and serve them at `GET /metrics` (a read route: keys apply).
    pub metrics: bool,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:5000".into(),
            cors_origins: vec!["*".into()],
            http_workers: 0,
            trusted_proxies: Vec::new(),
            metrics: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    pub url: String,
    /// Prefix of every queue key, so several deployments (or tests) can share one Redis.
    pub namespace: String,
    /// How often a worker asks Redis for a job while jobs keep coming (within a
    /// second of the last job or wake-up), and while its wake-up subscription is
    /// down (`crates/queue/src/wake.rs`).
    pub poll_interval_ms: u64,
    /// How often an idle worker asks anyway. A push wakes idle workers at once
    /// (and a delayed job when it is due), so this only bounds how late a job
    /// whose wake-up was lost starts. Equal to `poll_interval_ms`: always poll
    /// fast, without a wake-up subscription (the behaviour before wake-ups).
    pub idle_poll_interval_ms: u64,
    /// Worker keep-alive period; a worker silent for
    /// `heartbeat_seconds * missed_heartbeats` is presumed dead and its jobs re-run.
    pub heartbeat_seconds: u64,
    pub missed_heartbeats: usize,
    /// Upper bound on any single Redis command, so an outage is reported promptly.
    pub command_timeout_ms: u64,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379/0".into(),
            namespace: "mediapro".into(),
            poll_interval_ms: 50,
            idle_poll_interval_ms: 2000,
            heartbeat_seconds: 5,
            missed_heartbeats: 6,
            command_timeout_ms: 1500,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://path/to/file.db` (default, created on first start) or `postgres://…`.
    pub url: String,
    pub max_connections: u32,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self { url: "sqlite://data/mediapro.db".into(), max_connections: 8 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    /// Root of downloaded, uploaded and processed files. Task paths are relative to it.
    pub root: PathBuf,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self { root: PathBuf::from("data/media") }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecuritySettings {
    /// Allow URLs whose host is loopback, private, link-local, … (off by default: SSRF).
    /// Cloud metadata addresses stay refused even then.
    pub allow_private_networks: bool,
    /// Networks (CIDR, or bare addresses) allowed even when private, e.g.
    /// `["10.1.0.0/16"]`; metadata addresses stay refused.
    pub allowed_networks: Vec<String>,
    /// Full-access API keys (`Authorization: Bearer <key>` or `X-API-Key: <key>`).
    pub api_keys: Vec<ApiKeyEntry>,
    /// Keys that may only read (GET); anything that changes something needs a full key.
    pub read_api_keys: Vec<ApiKeyEntry>,
    /// With no key configured, answer requests for any `Host` and allow a bind to a
    /// non-loopback address. Off: a keyless API answers only `localhost`/loopback hosts.
    pub allow_anonymous: bool,
}

/// Shortest key accepted (a key given as `sha256:` is not checked: its key is unknown).
pub const MIN_API_KEY_LEN: usize = 16;

/// Prefix of a key entry given as the hex SHA-256 of the key instead of the key.
pub const API_KEY_HASH_PREFIX: &str = "sha256:";

/// One configured API key: the key itself, or `sha256:<64 hex>`. `Debug` never shows
/// it and serialising a plain key writes a placeholder, so neither a settings dump nor
/// a log line carries a secret. The API turns entries into digests at start-up
/// (`crates/api/src/auth.rs`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct ApiKeyEntry(String);

impl ApiKeyEntry {
    pub fn new(entry: impl Into<String>) -> Self {
        Self(entry.into())
    }

    /// The entry as configured (the key itself unless it is a `sha256:` entry).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits of a `sha256:` entry (not yet validated).
    pub fn sha256_hex(&self) -> Option<&str> {
        self.0.strip_prefix(API_KEY_HASH_PREFIX)
    }

    /// Why this entry cannot be used; the message never contains the key.
    fn problem(&self) -> Option<&'static str> {
        match self.sha256_hex() {
            _ if self.0.is_empty() => Some("is empty"),
            Some(hex) if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Some("is not sha256: followed by 64 hex digits")
            }
            Some(_) => None,
            None if self.0.chars().count() < MIN_API_KEY_LEN => Some("is shorter than 16 characters"),
            None if self.0.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                Some("contains whitespace or control characters")
            }
            None => None,
        }
    }
}

impl std::fmt::Debug for ApiKeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKeyEntry(<redacted>)")
    }
}

impl Serialize for ApiKeyEntry {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // A hash is no secret; a key is replaced by a placeholder that fails validation.
        match self.sha256_hex() {
            Some(_) => serializer.serialize_str(&self.0),
            None => serializer.serialize_str("<redacted>"),
        }
    }
}

impl SecuritySettings {
    pub fn has_keys(&self) -> bool {
        !self.api_keys.is_empty() || !self.read_api_keys.is_empty()
    }

    /// Every key entry is usable; the error names the list and the entry's position.
    pub fn check(&self) -> Result<(), SettingsError> {
        for (list, entries) in
            [("security.api_keys", &self.api_keys), ("security.read_api_keys", &self.read_api_keys)]
        {
            for (i, entry) in entries.iter().enumerate() {
                if let Some(why) = entry.problem() {
                    return Err(SettingsError(format!("{list}: entry {} {why}", i + 1)));
                }
            }
        }
        Ok(())
    }

    /// The API may listen on `bind` with these settings: a non-loopback address needs
    /// keys or `allow_anonymous`.
    pub fn check_exposure(&self, bind: &SocketAddr) -> Result<(), SettingsError> {
        if bind.ip().is_loopback() || self.has_keys() || self.allow_anonymous {
            return Ok(());
        }
        Err(SettingsError(format!(
            "security.api_keys: server.bind {bind} is not a loopback address; set security.api_keys \
             (or security.allow_anonymous = true to serve without keys)"
        )))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    pub max_file_size_bytes: u64,
    pub task_timeout_seconds: u64,
    pub analyze_timeout_seconds: u64,
    pub max_body_bytes: usize,
    /// Attempts of a task that fails for a transient reason (network, lost worker).
    pub max_attempts: u32,
    /// Delay before the second attempt after a transient failure; it doubles per
    /// attempt (with jitter) up to `retry_max_delay_seconds` (`crates/mediapro-core/src/retry.rs`).
    pub retry_first_delay_seconds: u64,
    pub retry_max_delay_seconds: u64,
    /// A site profile's site is held back this long after a throttled attempt
    /// (HTTP 429, a "rate limit" 403); it doubles with each throttled attempt
    /// after a back-off ended, up to `site_backoff_max_seconds`, and a successful
    /// attempt resets it (`crates/queue/src/site_gate.rs`).
    pub site_backoff_first_seconds: u64,
    pub site_backoff_max_seconds: u64,
    /// A running job that prints nothing for this long is killed as stalled.
    pub stall_timeout_seconds: u64,
    /// Files and records of finished tasks are removed after this many days.
    pub retention_days: u64,
    /// Downloads and uploads are refused while the storage root has less free space.
    pub min_free_disk_bytes: u64,
    /// ffmpeg's `-threads` (0 = one per core, ffmpeg's default).
    pub ffmpeg_threads: u32,
    /// Address-space ceiling of each ffmpeg run (`prlimit --as`); 0 = none.
    pub ffmpeg_max_memory_bytes: u64,
    /// Submissions (download, process, upload, retry) per API key (or client IP)
    /// per minute, shared by every API instance through Redis; 0 = unlimited.
    pub submissions_per_minute: u32,
    /// `POST /api/analyze` calls per API key (or client IP) per minute; 0 = unlimited.
    pub analyze_per_minute: u32,
    /// Submissions are refused (429) while the store holds this many pending
    /// tasks; 0 = unlimited.
    pub max_pending_tasks: u64,
    /// Request headers must arrive within this many seconds, and a request body
    /// must deliver `min_body_bytes_per_second` over each window this long.
    pub body_read_timeout_seconds: u64,
    pub min_body_bytes_per_second: u64,
    /// Analyze requests that may wait for one of the busy analyze slots; more get 503.
    pub analyze_queue: usize,
    /// Entries of a playlist or channel that analyze lists and a collection
    /// download expands; a longer collection is cut here (and says so).
    pub max_playlist_items: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            max_file_size_bytes: 5 * 1024 * 1024 * 1024,
            task_timeout_seconds: 3600,
            analyze_timeout_seconds: 30,
            max_body_bytes: 64 * 1024,
            max_attempts: 3,
            retry_first_delay_seconds: 2,
            retry_max_delay_seconds: 300,
            site_backoff_first_seconds: 30,
            site_backoff_max_seconds: 1800,
            stall_timeout_seconds: 600,
            retention_days: 7,
            min_free_disk_bytes: 1024 * 1024 * 1024,
            ffmpeg_threads: 2,
            ffmpeg_max_memory_bytes: 8 * 1024 * 1024 * 1024,
            submissions_per_minute: 120,
            analyze_per_minute: 60,
            max_pending_tasks: 10_000,
            body_read_timeout_seconds: 10,
            min_body_bytes_per_second: 1024,
            analyze_queue: 16,
            max_playlist_items: 1000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    pub download_concurrency: usize,
    pub process_concurrency: usize,
    /// Collections followed at once (each mostly waits for its child downloads).
    pub playlist_concurrency: usize,
    /// On SIGTERM, how long running jobs may take to finish before they are killed
    /// and handed back to the queue.
    pub drain_timeout_seconds: u64,
    /// A running attempt renews its lease on the task every second; another worker
    /// may take the task over once the lease is this old. Keep it below
    /// `redis.heartbeat_seconds * redis.missed_heartbeats`, when the queue hands a
    /// dead worker's job to another worker.
    pub lease_seconds: u64,
    /// How often a worker looks for accepted tasks whose job Redis lost.
    pub reconcile_interval_seconds: u64,
    /// How often a worker applies retention.
    pub retention_interval_seconds: u64,
    /// How often a site profile's `check_url` is analyzed (its health on the
    /// profile); 0 = only on demand (`POST /api/site-profiles/{name}/check`).
    pub site_check_interval_seconds: u64,
    /// Address of this worker's Prometheus endpoint (`GET /metrics`, no key:
    /// bind it to loopback or a private network); empty = no endpoint and no
    /// recording. Port 0 picks a free port (logged).
    pub metrics_bind: String,
}

impl WorkerSettings {
    /// Jobs of `kind` one worker process runs at once (`worker.<kind>_concurrency`).
    pub fn concurrency(&self, kind: TaskKind) -> usize {
        match kind {
            TaskKind::Download => self.download_concurrency,
            TaskKind::Process => self.process_concurrency,
            TaskKind::Playlist => self.playlist_concurrency,
        }
    }
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            download_concurrency: 2,
            process_concurrency: 1,
            playlist_concurrency: 4,
            drain_timeout_seconds: 25,
            lease_seconds: 20,
            reconcile_interval_seconds: 30,
            retention_interval_seconds: 3600,
            site_check_interval_seconds: 900,
            metrics_bind: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolSettings {
    pub ytdlp: PathBuf,
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
    /// Run yt-dlp as a child of the warm host (`crates/mediapro-core/ythost/ythost.py`,
    /// started by each API and worker process) instead of a fresh interpreter per
    /// run; while it is not ready, runs spawn `ytdlp`. `false`: always spawn.
    pub ytdlp_host: bool,
    /// The Python the host runs with (it must be able to `import yt_dlp`); empty =
    /// the interpreter named by the `#!` line of `ytdlp` when that is a Python,
    /// else `python3`.
    pub ytdlp_host_python: PathBuf,
    /// The host is replaced by a fresh one (which loads the installed yt-dlp
    /// again) after this many runs; 0 = never.
    pub ytdlp_host_max_jobs: u32,
    /// … or once its own resident memory passes this many MiB; 0 = never.
    pub ytdlp_host_max_rss_mib: u32,
}

impl Default for ToolSettings {
    fn default() -> Self {
        Self {
            ytdlp: "yt-dlp".into(),
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            ytdlp_host: true,
            ytdlp_host_python: PathBuf::new(),
            ytdlp_host_max_jobs: 1000,
            ytdlp_host_max_rss_mib: 512,
        }
    }
}

/// The smallest `tools.ytdlp_host_max_rss_mib` (an idle host is about 55 MiB).
pub const MIN_YTDLP_HOST_RSS_MIB: u32 = 128;

/// Signed webhooks (`crates/mediapro-core/src/webhooks.rs`): a submission's
/// `callback_url` and the endpoints configured here get task events.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// `whsec_<base64>`: signs deliveries to `callback_url`s, and to endpoints without
    /// a secret of their own. Without it a submission with `callback_url` is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<WebhookSecret>,
    /// Endpoints that get events of every task. In the environment, a JSON array:
    /// `MEDIAPRO__WEBHOOKS__ENDPOINTS='[{"url": "https://…", "events": ["task.failed"]}]'`.
    #[serde(deserialize_with = "endpoints_from_list_or_json")]
    pub endpoints: Vec<WebhookEndpoint>,
    /// Bound on one delivery attempt (connect, send, answer).
    pub timeout_seconds: u64,
    /// Retries after a failed attempt wait a random time (full jitter) up to
    /// `retry_base_seconds * 2^(attempt-1)`, capped at `retry_max_delay_seconds`.
    pub retry_base_seconds: f64,
    pub retry_max_delay_seconds: u64,
    /// A message without a 2xx this long after its event is `failed`.
    pub give_up_after_seconds: u64,
    /// How often a worker looks for due deliveries.
    pub poll_interval_ms: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            signing_secret: None,
            endpoints: Vec::new(),
            timeout_seconds: 10,
            retry_base_seconds: 5.0,
            retry_max_delay_seconds: 3600,
            give_up_after_seconds: 86_400,
            poll_interval_ms: 1000,
        }
    }
}

/// One configured endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpoint {
    /// http(s); reached through the egress guard like every outbound connection.
    pub url: String,
    /// Which events it gets; `task.progress` only when listed.
    pub events: Vec<WebhookEvent>,
    /// Its own `whsec_…`; else `webhooks.signing_secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<WebhookSecret>,
}

/// `endpoints` from a TOML array of tables, or from one JSON string (the
/// environment cannot spell an array of tables).
fn endpoints_from_list_or_json<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<WebhookEndpoint>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrJson {
        List(Vec<WebhookEndpoint>),
        Json(String),
    }
    match ListOrJson::deserialize(deserializer)? {
        ListOrJson::List(list) => Ok(list),
        ListOrJson::Json(text) if text.trim().is_empty() => Ok(Vec::new()),
        ListOrJson::Json(text) => serde_json::from_str(&text).map_err(|e| {
            serde::de::Error::custom(format!("webhooks.endpoints: not a JSON list of endpoints: {e}"))
        }),
    }
}

impl WebhookSettings {
    /// The secret that signs messages to `target` (an endpoint is found by its URL:
    /// its own secret, else the global one). `None`: the message cannot be signed any
    /// more (the endpoint was removed from the settings, or the secret was).
    pub fn secret_for(&self, target: Target, url: &str) -> Option<&WebhookSecret> {
        match target {
            Target::Callback => self.signing_secret.as_ref(),
            Target::Endpoint => self
                .endpoints
                .iter()
                .find(|e| e.url == url)
                .and_then(|e| e.secret.as_ref().or(self.signing_secret.as_ref())),
        }
    }

    fn check(&self) -> Result<(), SettingsError> {
        let bad = |key: &str, why: String| Err(SettingsError(format!("{key}: {why}")));
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            if let Err(e) = crate::validate::SourceUrl::parse(&endpoint.url) {
                return bad("webhooks.endpoints", format!("entry {}: url {}", i + 1, e.message));
            }
            if endpoint.events.is_empty() {
                return bad("webhooks.endpoints", format!("entry {}: events must not be empty", i + 1));
            }
            if endpoint.secret.is_none() && self.signing_secret.is_none() {
                return bad(
                    "webhooks.endpoints",
                    format!("entry {}: has no secret and webhooks.signing_secret is not set", i + 1),
                );
            }
        }
        if self.timeout_seconds == 0 {
            return bad("webhooks.timeout_seconds", "must be positive".into());
        }
        if !(self.retry_base_seconds.is_finite() && self.retry_base_seconds > 0.0) {
            return bad("webhooks.retry_base_seconds", "must be positive".into());
        }
        if (self.retry_max_delay_seconds as f64) < self.retry_base_seconds {
            return bad(
                "webhooks.retry_max_delay_seconds",
                "must be at least webhooks.retry_base_seconds".into(),
            );
        }
        if self.give_up_after_seconds == 0 || self.poll_interval_ms == 0 {
            return bad("webhooks.give_up_after_seconds", "durations must be positive".into());
        }
        Ok(())
    }
}

/// Subscriptions (`crates/mediapro-core/src/subscription.rs`): one scheduler
/// across every worker (a lease in Redis) starts their checks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubscriptionSettings {
    /// A subscription whose checks fail this many times in a row is paused with the reason.
    pub max_failures: u32,
    /// How often the scheduler looks for due checks and finished ones; its lease
    /// lasts three times this.
    pub scheduler_interval_seconds: u64,
}

impl Default for SubscriptionSettings {
    fn default() -> Self {
        Self { max_failures: 5, scheduler_interval_seconds: 15 }
    }
}

/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: &[&str] = &[
    "server.cors_origins",
    "server.trusted_proxies",
    "security.api_keys",
    "security.read_api_keys",
    "security.allowed_networks",
];

impl Settings {
    /// Loads the layered settings from the process environment.
    pub fn load() -> Result<Self, SettingsError> {
        let file = std::env::var_os("MEDIAPRO_CONFIG").map(PathBuf::from);
        Self::load_from(file, None)
    }

    /// Loads settings from an explicit file (required if given; `mediapro.toml` in
    /// the working directory is optional otherwise) and, for tests, an explicit
    /// environment map instead of the process environment.
    pub fn load_from(
        file: Option<PathBuf>,
        env: Option<std::collections::HashMap<String, String>>,
    ) -> Result<Self, SettingsError> {
        let defaults = config::Config::try_from(&Settings::default()).map_err(describe)?;
        let file_source = match file {
            Some(path) => config::File::from(path).required(true),
            None => config::File::with_name("mediapro.toml").required(false),
        };
        let mut env_source = config::Environment::with_prefix("MEDIAPRO")
            .prefix_separator("__")
            .separator("__")
            .list_separator(",")
            .try_parsing(true);
        for key in LIST_KEYS {
            env_source = env_source.with_list_parse_key(key);
        }
        if let Some(map) = env {
            env_source = env_source.source(Some(map));
        }
        let mut settings: Settings = config::Config::builder()
            .add_source(defaults)
            .add_source(file_source)
            .add_source(env_source)
            .build()
            .map_err(describe)?
            .try_deserialize()
            .map_err(describe)?;
        settings.normalise();
        settings.check()?;
        Ok(settings)
    }

    fn normalise(&mut self) {
        let clean = |list: &mut Vec<String>| {
            list.iter_mut().for_each(|s| *s = s.trim().to_owned());
            list.retain(|s| !s.is_empty());
        };
        clean(&mut self.server.cors_origins);
        clean(&mut self.server.trusted_proxies);
        clean(&mut self.security.allowed_networks);
        // Keys are trimmed but an empty entry stays, to fail `check` ("k1,,k2" is a typo);
        // only a list that is one empty value (`MEDIAPRO__SECURITY__API_KEYS=`) means none.
        for keys in [&mut self.security.api_keys, &mut self.security.read_api_keys] {
            keys.iter_mut().for_each(|k| k.0 = k.0.trim().to_owned());
            if keys.iter().all(|k| k.0.is_empty()) {
                keys.clear();
            }
        }
    }

    /// Semantic checks the types alone cannot express; each error names its key.
    fn check(&self) -> Result<(), SettingsError> {
        let bad = |key: &str, why: String| Err(SettingsError(format!("{key}: {why}")));
        if self.server.bind.parse::<SocketAddr>().is_err() {
            return bad(
                "server.bind",
                format!("'{}' is not an address like 127.0.0.1:5000", self.server.bind),
            );
        }
        if !self.worker.metrics_bind.is_empty() && self.worker.metrics_bind.parse::<SocketAddr>().is_err() {
            return bad(
                "worker.metrics_bind",
                format!(
                    "'{}' is not an address like 127.0.0.1:9101 (or empty: off)",
                    self.worker.metrics_bind
                ),
            );
        }
        if let Some(bad_ip) =
            self.server.trusted_proxies.iter().find(|p| p.parse::<std::net::IpAddr>().is_err())
        {
            return bad("server.trusted_proxies", format!("'{bad_ip}' is not an IP address"));
        }
        let redis_ok = ["redis://", "rediss://", "unix://", "redis+unix://"]
            .iter()
            .any(|p| self.redis.url.starts_with(p));
        if !redis_ok {
            return bad("redis.url", "must start with redis:// or rediss://".into());
        }
        if self.redis.namespace.is_empty()
            || !self.redis.namespace.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            return bad(
                "redis.namespace",
                "must be non-empty ASCII letters, digits, '-', '_', '.', ':'".into(),
            );
        }
        if self.redis.poll_interval_ms == 0 || self.redis.heartbeat_seconds == 0 {
            return bad("redis.poll_interval_ms", "intervals must be positive".into());
        }
        if self.redis.idle_poll_interval_ms < self.redis.poll_interval_ms {
            return bad("redis.idle_poll_interval_ms", "must be at least redis.poll_interval_ms".into());
        }
        if self.redis.missed_heartbeats == 0 {
            return bad("redis.missed_heartbeats", "must be at least 1".into());
        }
        if !(self.database.url.starts_with("sqlite:")
            || self.database.url.starts_with("postgres://")
            || self.database.url.starts_with("postgresql://"))
        {
            return bad("database.url", "must be sqlite://… or postgres://…".into());
        }
        if self.database.max_connections == 0 {
            return bad("database.max_connections", "must be at least 1".into());
        }
        if self.storage.root.as_os_str().is_empty() {
            return bad("storage.root", "must not be empty".into());
        }
        if let Err(e) = crate::validate::parse_networks(&self.security.allowed_networks.join(",")) {
            return bad("security.allowed_networks", e.to_string());
        }
        if self.limits.task_timeout_seconds == 0 {
            return bad("limits.task_timeout_seconds", "must be positive".into());
        }
        if self.limits.analyze_timeout_seconds == 0 {
            return bad("limits.analyze_timeout_seconds", "must be positive".into());
        }
        if self.limits.max_body_bytes < 1024 {
            return bad("limits.max_body_bytes", "must be at least 1024".into());
        }
        if self.limits.max_attempts == 0 {
            return bad("limits.max_attempts", "must be at least 1".into());
        }
        if !(1..=100_000).contains(&self.limits.max_playlist_items) {
            return bad("limits.max_playlist_items", "must be from 1 to 100000".into());
        }
        if self.limits.retry_max_delay_seconds < self.limits.retry_first_delay_seconds {
            return bad(
                "limits.retry_max_delay_seconds",
                "must be at least limits.retry_first_delay_seconds".into(),
            );
        }
        if self.limits.site_backoff_first_seconds == 0 {
            return bad("limits.site_backoff_first_seconds", "must be positive".into());
        }
        if self.limits.site_backoff_max_seconds < self.limits.site_backoff_first_seconds {
            return bad(
                "limits.site_backoff_max_seconds",
                "must be at least limits.site_backoff_first_seconds".into(),
            );
        }
        if self.limits.stall_timeout_seconds == 0 {
            return bad("limits.stall_timeout_seconds", "must be positive".into());
        }
        if !(1..=3600).contains(&self.limits.body_read_timeout_seconds) {
            return bad("limits.body_read_timeout_seconds", "must be from 1 to 3600".into());
        }
        if self.worker.lease_seconds < 3 {
            return bad("worker.lease_seconds", "must be at least 3".into());
        }
        if self.worker.reconcile_interval_seconds == 0 || self.worker.retention_interval_seconds == 0 {
            return bad("worker.reconcile_interval_seconds", "intervals must be positive".into());
        }
        let rss = self.tools.ytdlp_host_max_rss_mib;
        if rss != 0 && rss < MIN_YTDLP_HOST_RSS_MIB {
            return bad(
                "tools.ytdlp_host_max_rss_mib",
                format!("must be 0 (no limit) or at least {MIN_YTDLP_HOST_RSS_MIB}"),
            );
        }
        for (key, path) in [
            ("tools.ytdlp", &self.tools.ytdlp),
            ("tools.ffmpeg", &self.tools.ffmpeg),
            ("tools.ffprobe", &self.tools.ffprobe),
        ] {
            if path.as_os_str().is_empty() {
                return bad(key, "must not be empty".into());
            }
        }
        if let Some(kind) = TaskKind::iter().find(|&kind| self.worker.concurrency(kind) == 0) {
            return bad(&format!("worker.{kind}_concurrency"), "concurrency must be at least 1".into());
        }
        if self.subscriptions.max_failures == 0 {
            return bad("subscriptions.max_failures", "must be at least 1".into());
        }
        if !(1..=3600).contains(&self.subscriptions.scheduler_interval_seconds) {
            return bad("subscriptions.scheduler_interval_seconds", "must be from 1 to 3600".into());
        }
        self.security.check()?;
        self.webhooks.check()
    }

    /// The API's start-up check (the worker listens on nothing): see
    /// [`SecuritySettings::check_exposure`].
    pub fn check_api_exposure(&self) -> Result<(), SettingsError> {
        match self.server.bind.parse::<SocketAddr>() {
            Ok(bind) => self.security.check_exposure(&bind),
            Err(_) => Err(SettingsError(format!("server.bind: '{}' is not an address", self.server.bind))),
        }
    }

    /// The address policy every outbound connection made for a user follows
    /// (`crates/egress` enforces it at connect time).
    pub fn egress_policy(&self) -> crate::validate::EgressPolicy {
        crate::validate::EgressPolicy {
            allow_private_networks: self.security.allow_private_networks,
            // Checked by `validate` at load time.
            allowed_networks: crate::validate::parse_networks(&self.security.allowed_networks.join(","))
                .unwrap_or_default(),
        }
    }

    pub fn task_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.task_timeout_seconds)
    }

    pub fn analyze_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.analyze_timeout_seconds)
    }

    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.body_read_timeout_seconds)
    }
}

/// The `config` crate's messages already name the key ("… for key `limits.x`");
/// keep them on one line.
fn describe(err: config::ConfigError) -> SettingsError {
    SettingsError(err.to_string().replace('\n', " "))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
        Some(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    #[test]
    fn defaults_match_the_design() {
        let s = Settings::load_from(None, env(&[])).expect("defaults load");
        assert_eq!(s.server.bind, "127.0.0.1:5000");
        assert_eq!(s.server.cors_origins, vec!["*"]);
        assert_eq!(s.redis.url, "redis://127.0.0.1:6379/0");
        assert_eq!(s.database.url, "sqlite://data/mediapro.db");
        assert_eq!(s.storage.root, PathBuf::from("data/media"));
        assert!(!s.security.allow_private_networks);
        assert!(s.security.api_keys.is_empty());
        assert_eq!(s.limits.max_file_size_bytes, 5 * 1024 * 1024 * 1024);
        assert_eq!(s.limits.task_timeout_seconds, 3600);
        assert_eq!(s.limits.analyze_timeout_seconds, 30);
        assert_eq!(s.limits.submissions_per_minute, 120);
        assert_eq!(s.limits.analyze_per_minute, 60);
        assert_eq!(s.limits.max_pending_tasks, 10_000);
        assert_eq!(s.limits.body_read_timeout_seconds, 10);
        assert_eq!(s.limits.min_body_bytes_per_second, 1024);
        assert_eq!(s.limits.analyze_queue, 16);
        assert!(s.server.trusted_proxies.is_empty());
    }

    #[test]
    fn limit_settings_are_checked() {
        let err = Settings::load_from(None, env(&[("MEDIAPRO__LIMITS__BODY_READ_TIMEOUT_SECONDS", "0")]))
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("limits.body_read_timeout_seconds"), "{err}");
        let err = Settings::load_from(None, env(&[("MEDIAPRO__SERVER__TRUSTED_PROXIES", "10.0.0.1,proxy")]))
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("server.trusted_proxies"), "{err}");
        let s = Settings::load_from(
            None,
            env(&[
                ("MEDIAPRO__SERVER__TRUSTED_PROXIES", "10.0.0.1, ::1"),
                ("MEDIAPRO__LIMITS__MAX_PENDING_TASKS", "0"),
            ]),
        )
        .expect("loads");
        assert_eq!(s.server.trusted_proxies, vec!["10.0.0.1", "::1"]);
        assert_eq!(s.limits.max_pending_tasks, 0);
    }

    #[test]
    fn the_idle_poll_is_never_faster_than_the_busy_one() {
        let s = Settings::load_from(None, env(&[])).expect("defaults load");
        assert_eq!((s.redis.poll_interval_ms, s.redis.idle_poll_interval_ms), (50, 2000));
        let err = Settings::load_from(None, env(&[("MEDIAPRO__REDIS__IDLE_POLL_INTERVAL_MS", "20")]))
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("redis.idle_poll_interval_ms"), "{err}");
        // Equal: always poll fast, as before wake-ups.
        let s = Settings::load_from(None, env(&[("MEDIAPRO__REDIS__IDLE_POLL_INTERVAL_MS", "50")]))
            .expect("loads");
        assert_eq!(s.redis.idle_poll_interval_ms, 50);
    }

    #[test]
    fn environment_overrides_with_lists_and_bools() {
        let s = Settings::load_from(
            None,
            env(&[
                ("MEDIAPRO__SERVER__BIND", "0.0.0.0:8080"),
                ("MEDIAPRO__SERVER__CORS_ORIGINS", "https://a.example, https://b.example"),
                ("MEDIAPRO__SECURITY__ALLOW_PRIVATE_NETWORKS", "true"),
                ("MEDIAPRO__SECURITY__API_KEYS", "key-one-0123456789, key-two-0123456789"),
                ("MEDIAPRO__LIMITS__TASK_TIMEOUT_SECONDS", "60"),
            ]),
        )
        .expect("env loads");
        assert_eq!(s.server.bind, "0.0.0.0:8080");
        assert_eq!(s.server.cors_origins, vec!["https://a.example", "https://b.example"]);
        assert!(s.security.allow_private_networks);
        let keys: Vec<&str> = s.security.api_keys.iter().map(ApiKeyEntry::expose).collect();
        assert_eq!(keys, vec!["key-one-0123456789", "key-two-0123456789"]);
        assert_eq!(s.limits.task_timeout_seconds, 60);
    }

    #[test]
    fn subscription_keys_load_from_the_environment_and_are_checked() {
        let d = Settings::load_from(None, env(&[])).expect("defaults");
        assert_eq!((d.subscriptions.max_failures, d.subscriptions.scheduler_interval_seconds), (5, 15));
        let s = Settings::load_from(
            None,
            env(&[
                ("MEDIAPRO__SUBSCRIPTIONS__MAX_FAILURES", "2"),
                ("MEDIAPRO__SUBSCRIPTIONS__SCHEDULER_INTERVAL_SECONDS", "1"),
            ]),
        )
        .expect("env loads");
        assert_eq!((s.subscriptions.max_failures, s.subscriptions.scheduler_interval_seconds), (2, 1));
        for (key, value) in [
            ("MEDIAPRO__SUBSCRIPTIONS__MAX_FAILURES", "0"),
            ("MEDIAPRO__SUBSCRIPTIONS__SCHEDULER_INTERVAL_SECONDS", "0"),
        ] {
            let err = Settings::load_from(None, env(&[(key, value)])).expect_err(key).to_string();
            assert!(err.contains("subscriptions."), "{err}");
        }
    }

    #[test]
    fn webhook_endpoints_and_secret_load_from_the_environment() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let s = Settings::load_from(
            None,
            env(&[
                ("MEDIAPRO__WEBHOOKS__SIGNING_SECRET", secret),
                (
                    "MEDIAPRO__WEBHOOKS__ENDPOINTS",
                    r#"[{"url": "http://127.0.0.1:9/a", "events": ["task.failed", "task.progress"]},
                        {"url": "http://127.0.0.1:9/b", "events": ["task.completed"], "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}]"#,
                ),
                ("MEDIAPRO__WEBHOOKS__RETRY_BASE_SECONDS", "0.2"),
            ]),
        )
        .expect("loads");
        let w = &s.webhooks;
        assert!(w.signing_secret.is_some());
        assert_eq!(w.endpoints.len(), 2);
        assert_eq!(w.endpoints[0].events, vec![WebhookEvent::TaskFailed, WebhookEvent::TaskProgress]);
        assert!(w.endpoints[1].secret.is_some());
        assert!((w.retry_base_seconds - 0.2).abs() < 1e-9);
        assert_eq!(w.timeout_seconds, 10);
        let routes = crate::webhooks::WebhookRoutes::from_settings(w);
        assert_eq!(
            routes.endpoints_for(WebhookEvent::TaskProgress).collect::<Vec<_>>(),
            vec!["http://127.0.0.1:9/a"]
        );
        assert!(!routes.wants(WebhookEvent::TaskCancelled));
        use crate::webhooks::Target;
        let global = w.signing_secret.as_ref();
        assert_eq!(w.secret_for(Target::Callback, "http://127.0.0.1:9/x"), global);
        assert_eq!(w.secret_for(Target::Endpoint, "http://127.0.0.1:9/a"), global, "no own secret");
        assert_eq!(w.secret_for(Target::Endpoint, "http://127.0.0.1:9/b"), w.endpoints[1].secret.as_ref());
        assert_eq!(w.secret_for(Target::Endpoint, "http://127.0.0.1:9/removed"), None);
        let dump = format!("{s:?} {}", serde_json::to_string(&s).expect("json"));
        assert!(!dump.contains("MfKQ9r8"), "the secret leaked: {dump}");

        for (pairs, key) in [
            (vec![("MEDIAPRO__WEBHOOKS__SIGNING_SECRET", "hunter2")], "whsec_"),
            (
                vec![(
                    "MEDIAPRO__WEBHOOKS__ENDPOINTS",
                    r#"[{"url": "ftp://x/", "events": ["task.failed"]}]"#,
                )],
                "webhooks.endpoints",
            ),
            (
                vec![(
                    "MEDIAPRO__WEBHOOKS__ENDPOINTS",
                    r#"[{"url": "http://127.0.0.1/", "events": ["task.done"]}]"#,
                )],
                "webhooks.endpoints",
            ),
            (vec![("MEDIAPRO__WEBHOOKS__RETRY_BASE_SECONDS", "0")], "webhooks.retry_base_seconds"),
        ] {
            let err = Settings::load_from(None, env(&pairs)).expect_err("must fail").to_string();
            assert!(err.contains(key), "{pairs:?}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        // An endpoint needs a secret, its own or the global one.
        let err = Settings::load_from(
            None,
            env(&[(
                "MEDIAPRO__WEBHOOKS__ENDPOINTS",
                r#"[{"url": "http://127.0.0.1/", "events": ["task.failed"]}]"#,
            )]),
        )
        .expect_err("no secret")
        .to_string();
        assert!(err.contains("signing_secret"), "{err}");
    }

    #[test]
    fn empty_api_keys_mean_no_auth() {
        let s = Settings::load_from(None, env(&[("MEDIAPRO__SECURITY__API_KEYS", "")])).expect("loads");
        assert!(s.security.api_keys.is_empty());
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = Settings::load_from(None, env(&[("MEDIAPRO__LIMITS__TASK_TIMEOUT_SECONDS", "soon")]))
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("limits.task_timeout_seconds"), "{err}");
        assert!(!err.contains('\n'));

        let err = Settings::load_from(None, env(&[("MEDIAPRO__SERVER__BIND", "nowhere")]))
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("server.bind"), "{err}");

        let err = Settings::load_from(None, env(&[("MEDIAPRO__DATABASE__URL", "mysql://x")]))
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("database.url"), "{err}");

        let err = Settings::load_from(None, env(&[("MEDIAPRO__WORKER__METRICS_BIND", "9101")]))
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("worker.metrics_bind"), "{err}");
        let s = Settings::load_from(None, env(&[("MEDIAPRO__WORKER__METRICS_BIND", "127.0.0.1:0")]))
            .expect("an address loads");
        assert_eq!(s.worker.metrics_bind, "127.0.0.1:0");
        assert!(Settings::load_from(None, env(&[])).expect("defaults").worker.metrics_bind.is_empty());
    }

    #[test]
    fn the_ytdlp_host_settings_load_and_are_checked() {
        let s = Settings::load_from(None, env(&[])).expect("defaults");
        assert!(s.tools.ytdlp_host);
        assert!(s.tools.ytdlp_host_python.as_os_str().is_empty(), "found from yt-dlp's #! line");
        assert_eq!((s.tools.ytdlp_host_max_jobs, s.tools.ytdlp_host_max_rss_mib), (1000, 512));
        let s = Settings::load_from(
            None,
            env(&[
                ("MEDIAPRO__TOOLS__YTDLP_HOST", "false"),
                ("MEDIAPRO__TOOLS__YTDLP_HOST_PYTHON", "/opt/py/bin/python3"),
                ("MEDIAPRO__TOOLS__YTDLP_HOST_MAX_JOBS", "0"),
                ("MEDIAPRO__TOOLS__YTDLP_HOST_MAX_RSS_MIB", "0"),
            ]),
        )
        .expect("loads");
        assert!(!s.tools.ytdlp_host);
        assert_eq!(s.tools.ytdlp_host_python, PathBuf::from("/opt/py/bin/python3"));
        assert_eq!((s.tools.ytdlp_host_max_jobs, s.tools.ytdlp_host_max_rss_mib), (0, 0));
        for (var, value, key) in [
            ("MEDIAPRO__TOOLS__YTDLP_HOST_MAX_RSS_MIB", "64", "tools.ytdlp_host_max_rss_mib"),
            ("MEDIAPRO__TOOLS__YTDLP_HOST", "maybe", "tools.ytdlp_host"),
            ("MEDIAPRO__TOOLS__YTDLP", "", "tools.ytdlp"),
        ] {
            let err = Settings::load_from(None, env(&[(var, value)])).expect_err(var).to_string();
            assert!(err.contains(key), "{var}={value}: {err}");
        }
    }

    fn security_error(pairs: &[(&str, &str)]) -> String {
        Settings::load_from(None, env(pairs)).expect_err("must fail").to_string()
    }

    #[test]
    fn key_lists_load_plain_and_hashed_entries() {
        let hash = format!("sha256:{}", "ab".repeat(32));
        let s = Settings::load_from(
            None,
            env(&[
                ("MEDIAPRO__SECURITY__API_KEYS", &format!("full-key-0123456789,{hash}")),
                ("MEDIAPRO__SECURITY__READ_API_KEYS", "read-key-0123456789"),
                ("MEDIAPRO__SECURITY__ALLOW_ANONYMOUS", "true"),
            ]),
        )
        .expect("loads");
        assert_eq!(s.security.api_keys.len(), 2);
        assert_eq!(s.security.api_keys[1].sha256_hex(), Some("ab".repeat(32).as_str()));
        assert_eq!(s.security.read_api_keys[0].expose(), "read-key-0123456789");
        assert!(s.security.allow_anonymous);
        assert!(!Settings::default().security.allow_anonymous);
    }

    #[test]
    fn bad_key_entries_fail_naming_the_list_but_not_the_key() {
        let not_hex = format!("sha256:{}", "zz".repeat(32));
        for (var, value, list, why) in [
            ("MEDIAPRO__SECURITY__API_KEYS", "sha256:abc", "security.api_keys", "64 hex"),
            ("MEDIAPRO__SECURITY__API_KEYS", not_hex.as_str(), "security.api_keys", "64 hex"),
            ("MEDIAPRO__SECURITY__API_KEYS", "short-secret", "security.api_keys", "shorter than 16"),
            (
                "MEDIAPRO__SECURITY__API_KEYS",
                "full-key-0123456789,,",
                "security.api_keys",
                "entry 2 is empty",
            ),
            ("MEDIAPRO__SECURITY__READ_API_KEYS", "tiny-secret", "security.read_api_keys", "shorter"),
        ] {
            let err = security_error(&[(var, value)]);
            assert!(err.contains(list) && err.contains(why), "{value}: {err}");
            assert!(!err.contains('\n'), "{err}");
            assert!(!err.contains(value), "the entry leaked: {err}");
        }
    }

    #[test]
    fn keys_never_show_in_debug_or_serialised_settings() {
        let mut s = Settings::default();
        s.security.api_keys = vec![ApiKeyEntry::new("super-secret-key-0123456789")];
        s.security.read_api_keys = vec![ApiKeyEntry::new(format!("sha256:{}", "0f".repeat(32)))];
        let debug = format!("{s:?}");
        assert!(!debug.contains("super-secret"), "{debug}");
        let json = serde_json::to_string(&s).expect("serialises");
        assert!(!json.contains("super-secret"), "{json}");
        assert!(json.contains(&"0f".repeat(32)), "{json}");
    }

    #[test]
    fn non_loopback_bind_needs_keys_or_allow_anonymous() {
        let mut s = Settings::default();
        assert!(s.check_api_exposure().is_ok(), "127.0.0.1 without keys is fine");
        for bind in ["0.0.0.0:5000", "[::]:5000", "192.0.2.10:80"] {
            s.server.bind = bind.into();
            let err = s.check_api_exposure().expect_err(bind).to_string();
            assert!(err.contains("security.api_keys") && !err.contains('\n'), "{err}");
        }
        s.server.bind = "[::1]:5000".into();
        assert!(s.check_api_exposure().is_ok());
        s.server.bind = "0.0.0.0:5000".into();
        s.security.allow_anonymous = true;
        assert!(s.check_api_exposure().is_ok());
        s.security.allow_anonymous = false;
        s.security.read_api_keys = vec![ApiKeyEntry::new("read-key-0123456789")];
        assert!(s.check_api_exposure().is_ok(), "a read key is a key");
        // The same through the environment, as `mediapro-api` loads it.
        let s = Settings::load_from(None, env(&[("MEDIAPRO__SERVER__BIND", "0.0.0.0:5000")])).expect("loads");
        assert!(s.check_api_exposure().is_err());
    }
}
