//! Download jobs: yt-dlp into `downloads/<task_id>/`, success decided from the
//! path yt-dlp printed (checked to be a non-empty regular file inside the task's
//! folder), never from the exit code alone and never by listing a shared folder.

use std::path::{Path, PathBuf};

use apalis::prelude::{BoxDynError, WorkerContext};
use mediapro_core::{
    jobs::JobPayload,
    process::{self, ChildCommand, RunError},
    requests::DownloadSpec,
    task::{TaskRequest, TaskStatus},
    ytdlp::{DownloadArgs, DownloadOutput, ProgressTracker, classify_failure, parse_output_line},
};

use super::{
    attempt::{self, Attempt, Supervisor},
    fsutil::reset_dir,
    outcome::{Outcome, settle},
    pipeline,
};
use crate::context::JobContext;

#[tracing::instrument(skip_all, fields(task_id = ?job.claimed_task_id()))]
pub async fn run(job: JobPayload, ctx: &JobContext, worker: &WorkerContext) -> Result<(), BoxDynError> {
    let Some((attempt, request)) = attempt::begin(ctx, &job, TaskStatus::Downloading, worker.name()).await?
    else {
        return Ok(());
    };
    let TaskRequest::Download(spec) = request else {
        return settle(ctx, attempt, Outcome::Failed("task is not a download".into())).await;
    };
    let outcome = download(ctx, attempt, &spec).await;
    match (outcome, &spec.process) {
        (Outcome::Completed { files, .. }, Some(ops)) => pipeline::chain(ctx, attempt, files, ops).await,
        (outcome, _) => settle(ctx, attempt, outcome).await,
    }
}

async fn download(ctx: &JobContext, attempt: Attempt, spec: &DownloadSpec) -> Outcome {
    let dir = ctx.layout.download_dir(attempt.task_id);
    // Every attempt starts from an empty folder: a re-run after a crash must not
    // pick up (or list) a previous attempt's partial files.
    if let Err(e) = reset_dir(&dir).await {
        return Outcome::Transient(format!("cannot prepare the task folder: {e}"));
    }
    let settings = &ctx.settings;
    let args = DownloadArgs {
        spec,
        output_dir: &dir,
        max_filesize_bytes: settings.limits.max_file_size_bytes,
        socket_timeout_secs: 20,
    };
    let temp_dir = args.temp_dir();
    let mut command = ChildCommand::new(&settings.tools.ytdlp, args.to_args(), settings.task_timeout());
    command.working_dir = Some(dir.clone());

    let supervisor = Supervisor::new();
    let mut tracker = ProgressTracker::default();
    let mut output = DownloadOutput::default();
    let result = process::run(
        &command,
        |line| {
            supervisor.touch();
            if let Some(parsed) = parse_output_line(line) {
                if let Some(p) = tracker.update(&parsed) {
                    supervisor.report(p);
                }
                output.record(&parsed);
            }
        },
        supervisor.watch(ctx, attempt),
    )
    .await;
    let _ = tokio::fs::remove_dir_all(&temp_dir).await;

    let outcome = match result {
        Err(RunError::TimedOut(d)) => Outcome::Failed(format!("timed out after {} s", d.as_secs())),
        Err(RunError::Cancelled) => supervisor.stopped_outcome(),
        Err(e @ RunError::Spawn { .. }) => Outcome::Transient(e.to_string()),
        Err(e) => Outcome::Transient(format!("yt-dlp output could not be read: {e}")),
        Ok(out) if !out.status.success() => {
            let failure = classify_failure(&out.stderr_tail);
            if failure.permanent {
                Outcome::Failed(failure.reason)
            } else {
                Outcome::Transient(failure.reason)
            }
        }
        Ok(out) => match collect_files(ctx, &dir, &output).await {
            Some(files) => Outcome::Completed { files, output: None },
            // Exit 0 without a file: e.g. over --max-filesize, or filtered out.
            None => Outcome::Failed(format!(
                "yt-dlp produced no file: {}",
                classify_failure(&out.stderr_tail).reason
            )),
        },
    };
    if outcome.discards_files() {
        let _ = tokio::fs::remove_dir_all(&dir).await;
    }
    outcome
}

/// The media file first, then subtitles; each a storage-relative path of a
/// non-empty regular file that really lies inside `dir`.
async fn collect_files(ctx: &JobContext, dir: &Path, output: &DownloadOutput) -> Option<Vec<String>> {
    let media = output.media_file.as_deref()?;
    let mut files = vec![checked(ctx, dir, Path::new(media)).await?];
    for reported in output.subtitle_files.values() {
        // yt-dlp reports the subtitle's temp path; it is moved next to the media
        // file under the same name.
        let Some(name) = Path::new(reported).file_name() else { continue };
        if let Some(rel) = checked(ctx, dir, &dir.join(name)).await {
            files.push(rel);
        }
    }
    Some(files)
}

async fn checked(ctx: &JobContext, dir: &Path, path: &Path) -> Option<String> {
    let real: PathBuf = tokio::fs::canonicalize(path).await.ok()?;
    let real_dir = tokio::fs::canonicalize(dir).await.ok()?;
    if !real.starts_with(&real_dir) {
        tracing::warn!(path = %path.display(), "yt-dlp reported a file outside the task folder");
        return None;
    }
    let meta = tokio::fs::symlink_metadata(&real).await.ok()?;
    if !meta.is_file() || meta.len() == 0 {
        return None;
    }
    // Record the path under the configured root (not the canonical one), so the
    // API on another host with the same mount path resolves it too.
    ctx.layout.relative(&dir.join(real.strip_prefix(&real_dir).ok()?))
}
