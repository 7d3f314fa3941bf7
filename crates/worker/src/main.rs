use anyhow::Context;
use clap::Parser;
use mediapro_core::settings::Settings;
use mediapro_core::task::TaskKind;
use mediapro_worker::WorkerOptions;
use strum::IntoEnumIterator;

/// MediaPro worker: runs download and process jobs from Redis.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Comma-separated queues to consume (download, process, playlist); default: all of them.
    #[arg(long, value_delimiter = ',', value_parser = parse_queue)]
    queues: Vec<TaskKind>,
    /// Jobs run at once per queue (overrides worker.*_concurrency).
    #[arg(long)]
    concurrency: Option<usize>,
}

/// A queue is named after its task kind.
fn parse_queue(s: &str) -> Result<TaskKind, String> {
    s.trim().parse().map_err(|e: mediapro_core::task::UnknownVariant| e.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mediapro_core::telemetry::init();
    let cli = Cli::parse();
    if cli.concurrency == Some(0) {
        eprintln!("mediapro-worker: --concurrency must be at least 1");
        std::process::exit(2);
    }
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mediapro-worker: {e}");
            std::process::exit(2);
        }
    };
    let mut queues = if cli.queues.is_empty() { TaskKind::iter().collect() } else { cli.queues };
    queues.dedup();
    let options = WorkerOptions { queues, concurrency: cli.concurrency, ytdlp: None };
    mediapro_worker::run(settings, options, shutdown_signal()).await.context("worker failed")
}

async fn shutdown_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {},
        r = tokio::signal::ctrl_c() => r?,
    }
    tracing::info!("shutting down: finishing running jobs");
    Ok(())
}
