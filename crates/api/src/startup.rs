//! Builds the application from settings, on a configured address or port 0 (tests).

use std::{net::TcpListener, sync::Arc};

use actix_cors::Cors;
use actix_web::{App, HttpServer, dev::Server, middleware, web};
use mediapro_core::{
    metrics::Metrics,
    process::ythost::YtdlpRunner,
    retry::RetryPolicy,
    settings::Settings,
    storage::StorageLayout,
    store::{StoreError, TaskStore},
    webhooks::WebhookRoutes,
};
use mediapro_egress::EgressGuard;
use mediapro_queue::{Dispatcher, QueueClient, metrics::Registry};
use tokio::sync::Semaphore;

use crate::{auth, body_deadline, error, limits::Limits, routes, state::AppState};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("storage root {path}: {source}")]
    Storage { path: String, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Bad key entries, or no keys on a non-loopback address (`crates/api/src/auth.rs`).
    #[error("{0}")]
    Security(String),
}

pub struct Application {
    port: u16,
    server: Server,
    ytdlp: Arc<YtdlpRunner>,
}

/// Task events buffered per API process for slow event-stream clients; one
/// that falls further behind gets a `snapshot` event and re-lists.
const EVENT_BUFFER: usize = 4096;

/// Concurrent yt-dlp analyze runs per API process.
const ANALYZE_CONCURRENCY: usize = 4;

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let listener = TcpListener::bind(&settings.server.bind)
            .map_err(|source| StartupError::Bind { addr: settings.server.bind.clone(), source })?;
        Self::build_with_listener(settings, listener).await
    }

    pub async fn build_with_listener(
        settings: Settings,
        listener: TcpListener,
    ) -> Result<Self, StartupError> {
        let storage_err =
            |source| StartupError::Storage { path: settings.storage.root.display().to_string(), source };
        std::fs::create_dir_all(&settings.storage.root).map_err(storage_err)?;
        let layout = StorageLayout::new(&settings.storage.root).map_err(storage_err)?;
        let store = TaskStore::connect(&settings.database.url, settings.database.max_connections)
            .await?
            .with_webhooks(WebhookRoutes::from_settings(&settings.webhooks));
        // The one place migrations run.
        store.migrate().await?;
        // Checked on the address actually listened on, whatever `server.bind` says.
        let local =
            listener.local_addr().map_err(|source| StartupError::Bind { addr: "listener".into(), source })?;
        settings.security.check_exposure(&local).map_err(|e| StartupError::Security(e.to_string()))?;
        let keyring = Arc::new(auth::Keyring::new(&settings.security).map_err(StartupError::Security)?);
        let port = local.port();
        let queue = Arc::new(QueueClient::new(settings.redis.clone()));
        let dispatcher =
            Dispatcher::new(store.clone(), queue.clone(), RetryPolicy::from_limits(&settings.limits));
        let registry = settings.server.metrics.then(Registry::new);
        let metrics = registry.as_ref().map_or_else(Metrics::off, Registry::metrics);
        let limits = Limits::new(
            &settings,
            queue.clone(),
            Arc::new(Semaphore::new(ANALYZE_CONCURRENCY)),
            metrics.clone(),
        );
        // The warm yt-dlp host starts in the background (analyze spawns yt-dlp
        // until it is ready); its version is logged once known.
        let ytdlp = Arc::new(YtdlpRunner::start(&settings.tools));
        tokio::spawn({
            let ytdlp = ytdlp.clone();
            async move { ytdlp.announce().await }
        });
        let state = web::Data::new(AppState {
            ytdlp: ytdlp.clone(),
            egress: EgressGuard::new(settings.egress_policy()).with_metrics(metrics.clone()),
            metrics,
            registry,
            events: mediapro_queue::events::spawn_event_reader(settings.redis.clone(), EVENT_BUFFER),
            queue,
            dispatcher,
            limits,
            store,
            layout,
            settings,
        });
        let http_workers = state.settings.server.http_workers;
        let max_body = state.settings.limits.max_body_bytes;
        let header_timeout = state.settings.body_read_timeout();
        let app_state = state.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(web::Data::from(keyring.clone()))
                .app_data(
                    web::JsonConfig::default()
                        .limit(max_body)
                        .content_type_required(true)
                        .error_handler(error::json_error),
                )
                .app_data(web::QueryConfig::default().error_handler(error::query_error))
                .app_data(web::PathConfig::default().error_handler(error::path_error))
                .app_data(web::PayloadConfig::new(max_body))
                // Keys are checked per resource, after routing (`routes::resource`); CORS
                // answers preflights before routing, so they need no key.
                .wrap(middleware::from_fn(body_deadline::limit_body_rate))
                .wrap(cors(&app_state.settings.server.cors_origins))
                .wrap(middleware::from_fn(auth::access_log))
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
        })
        .client_request_timeout(header_timeout)
        .shutdown_timeout(30);
        if http_workers > 0 {
            server = server.workers(http_workers);
        }
        let server = server
            .listen(listener)
            .map_err(|source| StartupError::Bind { addr: "listener".into(), source })?
            .run();
        Ok(Self { port, server, ytdlp })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// How this API runs yt-dlp (its warm host's state; tests wait for it).
    pub fn ytdlp(&self) -> Arc<YtdlpRunner> {
        self.ytdlp.clone()
    }

    /// Runs until SIGINT/SIGTERM, then drains in-flight requests.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

fn cors(origins: &[String]) -> Cors {
    let base = Cors::default().allow_any_method().allow_any_header().max_age(3600);
    if origins.iter().any(|o| o == "*") {
        base.allow_any_origin().send_wildcard()
    } else {
        origins.iter().fold(base, |c, o| c.allowed_origin(o))
    }
}
