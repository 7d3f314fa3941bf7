//! Download jobs: yt-dlp into `downloads/<task_id>/`, success decided from the
//! path yt-dlp printed (checked to be a non-empty regular file inside the task's
//! folder), never from the exit code alone and never by listing a shared folder.

use std::path::{Path, PathBuf};

use mediapro_core::{
    process::{self, ChildCommand},
    requests::DownloadSpec,
    ytdlp::{DownloadArgs, DownloadOutput, ProgressTracker, classify_failure, parse_output_line},
};

use super::{
    attempt::{Attempt, Supervisor},
    fsutil::reset_dir,
    outcome::Outcome,
};
use crate::context::JobContext;

pub async fn run(ctx: &JobContext, attempt: &Attempt, spec: &DownloadSpec) -> Outcome {
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
        Err(e) => Outcome::from_run_error(e, "yt-dlp"),
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
