//! Download jobs: yt-dlp into `downloads/<task_id>/`, every connection through
//! the egress guard, the size cap enforced while it runs, and success decided from
//! the path yt-dlp printed (a non-empty regular file inside the task's folder that
//! probes as media), never from the exit code alone and never by listing a shared
//! folder.

use std::path::{Path, PathBuf};

use std::time::Duration;

use mediapro_core::{
    ffmpeg,
    process::{ChildCommand, StopReason},
    requests::DownloadSpec,
    site_profile::{PrivateCookies, SiteProfile},
    task::Phase,
    validate::SourceUrl,
    ytdlp::{
        ArchiveKeyArgs, DownloadArgs, DownloadOutput, FailureClass, OutputLine, ProgressTracker, SiteArgs,
        classify_failure, files, parse_output_line,
    },
};

use super::{
    attempt::{Attempt, Supervisor},
    fsutil::reset_dir,
    outcome::Outcome,
    site::SiteHold,
    timing,
};
use crate::context::JobContext;

/// `site`: the site gate's slot the job holds (`site.rs`), if its site has a profile.
pub async fn run(
    ctx: &JobContext,
    attempt: &Attempt,
    spec: &DownloadSpec,
    site: Option<&SiteHold>,
) -> Outcome {
    let dir = ctx.layout.download_dir(attempt.task_id);
    // Every attempt starts from an empty folder: a re-run after a crash must not
    // pick up (or list) a previous attempt's partial files.
    if let Err(e) = reset_dir(&dir).await {
        return Outcome::Transient(format!("cannot prepare the task folder: {e}"));
    }
    timing::mark("folder");
    let outcome = download(ctx, attempt, spec, &dir, site).await;
    if outcome.discards_files() {
        let _ = tokio::fs::remove_dir_all(&dir).await;
    }
    outcome
}

async fn download(
    ctx: &JobContext,
    attempt: &Attempt,
    spec: &DownloadSpec,
    dir: &Path,
    hold: Option<&SiteHold>,
) -> Outcome {
    let settings = &ctx.settings;
    // The site profile of the URL's host, and its cookies as this job's private
    // copy in the task folder (removed when `cookies` drops, whatever the outcome).
    let (profile, cookies) = match site_profile(ctx, attempt.task_id, &spec.url, dir).await {
        Ok(found) => found,
        Err(outcome) => return outcome,
    };
    let site = profile.as_ref().map(|p| SiteArgs::new(p, cookies.as_ref().map(PrivateCookies::path)));
    // Every connection yt-dlp (and the ffmpeg it starts) makes goes through a
    // proxy of this job's own, which checks each address at connect time (and
    // then goes through the profile's upstream proxy, if it names one).
    let upstream = profile.as_ref().and_then(|p| p.upstream_proxy.as_ref());
    let proxy = match ctx.egress.start_proxy_via(upstream).await {
        Ok(p) => p,
        Err(e) => return Outcome::Transient(format!("cannot start the egress proxy: {e}")),
    };
    timing::mark("proxy");
    // The first connection through it is the job's start as its site sees it.
    if let Some(hold) = hold {
        hold.started_on(proxy.first_connection());
    }
    let proxy_url = proxy.url();
    if spec.skip_archived
        && let Some(reason) = archived(ctx, spec, &proxy_url, site.as_ref()).await
    {
        return Outcome::Skipped(reason);
    }
    let cap = settings.limits.max_file_size_bytes;
    let args = DownloadArgs {
        spec,
        output_dir: dir,
        max_filesize_bytes: cap,
        socket_timeout_secs: 20,
        proxy: Some(&proxy_url),
        site: site.as_ref(),
    };
    let temp_dir = args.temp_dir();
    let mut command = ChildCommand::new(ctx.ytdlp.program(), args.to_args(), settings.task_timeout());
    command.working_dir = Some(dir.to_path_buf());

    let supervisor = Supervisor::new();
    let mut tracker = ProgressTracker::default();
    let mut output = DownloadOutput::default();
    // Stop on supervision (cancel, stall, lease) or when the folder passes the
    // size cap, whatever the server announced (`--max-filesize` needs a
    // Content-Length; a chunked stream has none).
    let stop = async {
        tokio::select! {
            reason = supervisor.watch(ctx, attempt) => reason,
            reason = size_watchdog(dir, cap) => reason,
        }
    };
    // In the warm host while it is ready (same argv, environment, folder and
    // group kill as a spawned yt-dlp), else spawned.
    let result = ctx
        .ytdlp
        .run(
            &command,
            |line| {
                supervisor.touch();
                if let Some(parsed) = parse_output_line(line) {
                    if let Some(p) = tracker.update(&parsed) {
                        supervisor.report(p);
                    }
                    track_phase(&supervisor, &parsed);
                    output.record(&parsed);
                }
            },
            stop,
        )
        .await;
    timing::mark("yt-dlp");
    let _ = tokio::fs::remove_dir_all(&temp_dir).await;
    // A refused connection decides the outcome: whatever yt-dlp made of the
    // 403 it got, the page asked for an address it may not reach.
    if let Some(reason) = proxy.first_refusal_reason() {
        return Outcome::Failed(reason);
    }
    match result {
        Err(e) => Outcome::from_run_error(e, "yt-dlp", &ctx.metrics),
        Ok(out) if !out.status.success() => {
            let failure = classify_failure(&out.stderr_tail);
            match failure.class {
                FailureClass::Permanent => Outcome::Failed(failure.reason),
                FailureClass::Transient => Outcome::Transient(failure.reason),
                FailureClass::Throttled => Outcome::Throttled(failure.reason),
            }
        }
        Ok(out) => match collect_files(ctx, dir, &output).await {
            Some(files) => {
                timing::mark("collect");
                supervisor.phase(Phase::Verifying);
                let outcome = verify(ctx, files).await;
                // The download archive remembers what was downloaded (beyond retention).
                if let (Outcome::Completed { .. }, Some((extractor, id))) = (&outcome, &output.archive_key) {
                    let task = attempt.task_id.to_string();
                    if let Err(e) =
                        ctx.store().archive(extractor, id, Some(&task), Some(spec.url.as_str())).await
                    {
                        tracing::warn!(task_id = %task, error = %e, "download archive not updated");
                    }
                }
                outcome
            }
            // Exit 0 without a file: e.g. over --max-filesize, or filtered out.
            None => Outcome::Failed(format!(
                "yt-dlp produced no file: {}",
                classify_failure(&out.stderr_tail).reason
            )),
        },
    }
}

/// "skipped: …" when the download archive has the URL's item (its key taken with
/// one extraction, no download). A key that cannot be taken is no reason to skip:
/// the download itself then says what is wrong.
async fn archived(
    ctx: &JobContext,
    spec: &DownloadSpec,
    proxy: &str,
    site: Option<&SiteArgs<'_>>,
) -> Option<String> {
    let args = ArchiveKeyArgs { url: &spec.url, socket_timeout_secs: 20, proxy: Some(proxy), site }.to_args();
    let stdout =
        mediapro_core::analyze::run_listing(&ctx.ytdlp, args, ctx.settings.analyze_timeout()).await.ok()?;
    let (extractor, id) = mediapro_core::store::parse_archive_line(stdout.lines().next()?)?;
    match ctx.store().is_archived(&extractor, &id).await {
        Ok(true) => Some(format!("skipped: {extractor} {id} is in the download archive")),
        Ok(false) => None,
        Err(e) => {
            tracing::warn!(error = %e, "download archive not readable; downloading");
            None
        }
    }
}

/// The profile of `url`'s host (recorded on the task as `site_profile`) and, if
/// it has cookies, their private copy in `dir` (removed when it drops).
pub(super) async fn site_profile(
    ctx: &JobContext,
    task_id: uuid::Uuid,
    url: &SourceUrl,
    dir: &Path,
) -> Result<(Option<SiteProfile>, Option<PrivateCookies>), Outcome> {
    let store = ctx.store();
    let unreadable = |e: mediapro_core::store::StoreError| {
        Outcome::Transient(format!("cannot read the site profile: {e}"))
    };
    let profile = store.site_profile_for_host(&url.host()).await.map_err(unreadable)?;
    if let Err(e) = store.set_task_site_profile(task_id, profile.as_ref().map(|p| p.name.as_str())).await {
        tracing::warn!(task_id = %task_id, error = %e, "site_profile not recorded on the task");
    }
    let Some(profile) = profile else { return Ok((None, None)) };
    let cookies = match store.site_cookies(&profile.name).await.map_err(unreadable)? {
        Some(text) => Some(
            PrivateCookies::write(dir, &text)
                .await
                .map_err(|e| Outcome::Transient(format!("cannot write the cookies copy: {e}")))?,
        ),
        None => None,
    };
    Ok((Some(profile), cookies))
}

/// Phase, speed, ETA and bytes from yt-dlp's machine-readable lines.
fn track_phase(supervisor: &Supervisor, line: &OutputLine) {
    match line {
        OutputLine::Progress { downloaded, total, speed, eta, format_id: Some(_), finished } => {
            supervisor.detail(|d| {
                d.phase = Some(Phase::Downloading);
                d.downloaded_bytes = Some(*downloaded);
                d.total_bytes = *total;
                d.speed_bps = if *finished { None } else { *speed };
                d.eta_seconds = if *finished { None } else { *eta };
            });
        }
        OutputLine::PostProcess { postprocessor, finished: false } => supervisor
            .phase(if postprocessor.contains("Merger") { Phase::Merging } else { Phase::PostProcessing }),
        _ => {}
    }
}

/// Resolves once the files under `dir` (the part files included) pass `cap`
/// bytes; checked twice a second.
async fn size_watchdog(dir: &Path, cap: u64) -> StopReason {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if folder_size(dir).await > cap {
            return StopReason::TooLarge(cap);
        }
    }
}

async fn folder_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(mut entries) = tokio::fs::read_dir(&d).await else { continue };
        while let Ok(Some(entry)) = entries.next_entry().await {
            match entry.file_type().await {
                Ok(t) if t.is_dir() => pending.push(entry.path()),
                Ok(t) if t.is_file() => total += entry.metadata().await.map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

/// A download is `completed` only if its media file is media: an allowed
/// extension and a probe (the same whitelisted ffprobe as processing) that
/// finds a stream. Subtitle files that are not subtitle text are dropped.
async fn verify(ctx: &JobContext, files: Vec<String>) -> Outcome {
    let Some((media, subtitles)) = files.split_first() else {
        return Outcome::Failed("yt-dlp produced no file".into());
    };
    let Some(media_path) = ctx.layout.resolve(media) else {
        return Outcome::Failed("the downloaded file is outside the storage root".into());
    };
    if !files::has_media_extension(&media_path) {
        return Outcome::Failed(format!(
            "not a media file: the extension of {} is not one of {}",
            media_path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
            files::MEDIA_EXTENSIONS.join(", ")
        ));
    }
    if let Err(e) = ffmpeg::probe(&ctx.settings.tools.ffprobe, &media_path).await {
        let why = e.to_string();
        return Outcome::Failed(format!("not a media file ({})", why.trim_start_matches("input_file: ")));
    }
    timing::mark("ffprobe");
    let mut kept = vec![media.clone()];
    for sub in subtitles {
        let Some(path) = ctx.layout.resolve(sub) else { continue };
        if subtitle_is_text(&path).await {
            kept.push(sub.clone());
        } else {
            tracing::warn!(file = %sub, "dropped a subtitle file that is not subtitle text");
            let _ = tokio::fs::remove_file(&path).await;
        }
    }
    Outcome::Completed { files: kept, output: None }
}

async fn subtitle_is_text(path: &Path) -> bool {
    use tokio::io::AsyncReadExt;
    let Ok(file) = tokio::fs::File::open(path).await else { return false };
    let mut head = Vec::with_capacity(1024);
    if file.take(1024).read_to_end(&mut head).await.is_err() {
        return false;
    }
    files::is_subtitle_text(path, &head)
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
