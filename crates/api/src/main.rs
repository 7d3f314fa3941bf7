use anyhow::Context;
use clap::Parser;
use mediapro_api::Application;
use mediapro_core::settings::Settings;

/// MediaPro HTTP API. Settings come from defaults, `mediapro.toml` (or the file in
/// MEDIAPRO_CONFIG) and MEDIAPRO__SECTION__KEY environment variables.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Listen address (overrides server.bind).
    #[arg(long)]
    bind: Option<String>,
    /// Print the OpenAPI document (as served at /api/openapi.json) and exit.
    #[arg(long)]
    print_openapi: bool,
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    mediapro_core::telemetry::init();
    let cli = Cli::parse();
    if cli.print_openapi {
        println!("{}", mediapro_api::openapi_document());
        return Ok(());
    }
    let mut settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mediapro-api: {e}");
            std::process::exit(2);
        }
    };
    if let Some(bind) = cli.bind {
        settings.server.bind = bind;
    }
    // No keys on a non-loopback address would serve anyone: refuse, as for bad settings.
    if let Err(e) = settings.check_api_exposure() {
        eprintln!("mediapro-api: {e}");
        std::process::exit(2);
    }
    let app = Application::build(settings).await.context("start-up failed")?;
    tracing::info!(port = app.port(), "mediapro-api listening");
    app.run_until_stopped().await.context("server error")
}
