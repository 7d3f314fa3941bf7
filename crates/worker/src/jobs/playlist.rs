//! Collection jobs (`playlist`): list the selected entries of a playlist, channel
//! or feed flat (one yt-dlp run through the egress guard, bounded by
//! `limits.max_playlist_items` and in time, cancellable), record one child
//! download per entry with the parent's compare-and-set, then follow the children
//! until every one is final. The parent completes if any child completed, else
//! fails; when every entry is in the download archive (`skip_archived`) it
//! completes: at once with no child, or once every child skipped itself. A re-run
//! (lease takeover, client retry) finds the expansion recorded and only follows.
//! A subscription's check (`spec.subscription_id`, see
//! `crates/worker/src/subscriptions.rs`) creates no child for an entry an earlier
//! check queued, and completes at once, listing recorded, when nothing is new.

use std::time::Duration;

use mediapro_core::{
    analyze::{AnalyzeError, run_listing},
    requests::{DownloadSpec, Expansion, PlaylistSpec},
    site_profile::PrivateCookies,
    store::Lease,
    task::{Phase, ProgressDetail, Task, TaskRequest, TaskStatus},
    validate::SourceUrl,
    ytdlp::{CollectionEntry, ListArgs, PlaylistItems, SiteArgs, parse_listing},
};

use super::{
    attempt::{Attempt, Supervisor},
    outcome::Outcome,
};
use crate::context::JobContext;

const TICK: Duration = Duration::from_secs(1);

pub async fn run(ctx: &JobContext, attempt: &Attempt, spec: &PlaylistSpec) -> Outcome {
    let children = match &spec.expansion {
        Some(done) => done.children,
        None => match expand(ctx, attempt, spec).await {
            Ok(children) => children,
            Err(outcome) => return outcome,
        },
    };
    // Every selected entry was in the download archive, or a subscription's
    // check found nothing new: nothing left to do.
    if children == 0 {
        return Outcome::Completed { files: Vec::new(), output: None };
    }
    follow(ctx, attempt).await
}

/// Lists the entries and records the children (how many). `Err`: the attempt
/// ends there. A subscription's check (`spec.subscription_id`) also leaves out
/// the entries an earlier check of it queued, and records its listing even when
/// nothing is new.
async fn expand(ctx: &JobContext, attempt: &Attempt, spec: &PlaylistSpec) -> Result<u64, Outcome> {
    let settings = &ctx.settings;
    let max = settings.limits.max_playlist_items;
    let items = spec.items.clone().unwrap_or_else(|| PlaylistItems::span(1, max));
    // The site profile applies to the listing too: its cookies as a private copy in
    // the collection's own folder, removed when `cookies` drops (every return below).
    let dir = ctx.layout.download_dir(attempt.task_id);
    let (profile, cookies) = super::download::site_profile(ctx, attempt.task_id, &spec.url, &dir).await?;
    let site = profile.as_ref().map(|p| SiteArgs::new(p, cookies.as_ref().map(PrivateCookies::path)));
    let proxy = ctx
        .egress
        .start_proxy_via(profile.as_ref().and_then(|p| p.upstream_proxy.as_ref()))
        .await
        .map_err(|e| Outcome::Transient(format!("cannot start the egress proxy: {e}")))?;
    let proxy_url = proxy.url();
    let ytdlp_items = items.to_ytdlp();
    let args = ListArgs {
        url: &spec.url,
        items: &ytdlp_items,
        socket_timeout_secs: 20,
        proxy: Some(&proxy_url),
        site: site.as_ref(),
    }
    .to_args();
    // A listing is one page fetch or a few: the analyze timeout, ten times over.
    let timeout = (settings.analyze_timeout() * 10).min(settings.task_timeout());
    let supervisor = Supervisor::new();
    supervisor.phase(Phase::Expanding);
    let listing = tokio::select! {
        listed = run_listing(&ctx.ytdlp, args, timeout) => listed,
        reason = supervisor.watch(ctx, attempt) => {
            // Dropping the run kills its process group.
            return Err(Outcome::from_run_error(
                mediapro_core::process::RunError::Stopped(reason), "yt-dlp", &ctx.metrics,
            ));
        }
    };
    if let Some(reason) = proxy.first_refusal_reason() {
        return Err(Outcome::Failed(reason));
    }
    let stdout = listing.map_err(|e| match e {
        AnalyzeError::Upstream(reason) => Outcome::Transient(reason),
        AnalyzeError::Tool(e) => Outcome::from_run_error(e, "yt-dlp", &ctx.metrics),
        other => Outcome::Failed(other.to_string()),
    })?;
    let collection = match parse_listing(&stdout, 1) {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Err(Outcome::Failed(
                "the URL is a single video, not a playlist: download it without `playlist`".into(),
            ));
        }
        Err(e) => return Err(Outcome::Failed(e.to_string())),
    };
    let mut entries: Vec<_> = collection.entries.iter().filter(|e| items.contains(e.index)).collect();
    // Entries whose listing names an archived item get no child (`skip_archived`).
    let mut skipped_archived = 0;
    if spec.entry.skip_archived {
        let mut kept = Vec::with_capacity(entries.len());
        for e in entries {
            if in_archive(ctx, e).await {
                skipped_archived += 1;
            } else {
                kept.push(e);
            }
        }
        entries = kept;
    }
    // A subscription's check: one child per entry, ever (unless its download failed).
    let mut skipped_known = 0;
    if let Some(subscription) = spec.subscription_id {
        let known = ctx
            .store()
            .known_entries(subscription)
            .await
            .map_err(|e| Outcome::Transient(format!("could not read the subscription's entries: {e}")))?;
        entries.retain(|e| {
            let seen = e.url.as_ref().is_some_and(|u| known.contains(u));
            skipped_known += u64::from(seen);
            !seen
        });
    }
    // Created (and so listed and queued) last entry first.
    if spec.reverse {
        entries.reverse();
    }
    let children: Vec<Task> = entries
        .into_iter()
        .filter_map(|e| {
            let url = SourceUrl::parse(e.url.as_deref()?).ok()?;
            let mut child = Task::new_pending(TaskRequest::Download(DownloadSpec {
                url,
                playlist_index: Some(e.index),
                ..spec.entry.clone()
            }));
            child.parent_task_id = Some(attempt.task_id);
            Some(child)
        })
        .collect();
    // No child because every entry is archived (or, for a subscription's check,
    // queued before) is recorded like any expansion (its note says so) and
    // completes; no entry at all is a failure, but for a subscription's check.
    if children.is_empty() && skipped_archived == 0 && spec.subscription_id.is_none() {
        return Err(Outcome::Failed(format!(
            "the playlist lists no downloadable entry{}",
            spec.items.as_ref().map(|i| format!(" among {i}")).unwrap_or_default()
        )));
    }
    let truncated = spec.items.is_none() && collection.entry_count.is_some_and(|n| n > u64::from(max));
    let expanded = TaskRequest::Playlist(Box::new(PlaylistSpec {
        expansion: Some(
            Expansion::new(
                collection.entry_count,
                children.len() as u64,
                truncated.then_some(max),
                skipped_archived,
            )
            .with_known(skipped_known),
        ),
        ..spec.clone()
    }));
    match ctx.dispatcher.expand(attempt.task_id, attempt.number, &expanded, &children).await {
        Ok(true) => Ok(children.len() as u64),
        // Cancelled or taken over meanwhile: nothing was written.
        Ok(false) => Err(Outcome::Lost),
        Err(e) => Err(Outcome::Transient(format!("could not record the entries: {e}"))),
    }
}

/// Whether the download archive has an entry's item: by the key its listing
/// names, else by the URL a completed download of it recorded (a feed's
/// enclosures are listed without an id; yt-dlp's generic extractor names each
/// only by fetching it). An archive that cannot be read skips nothing.
async fn in_archive(ctx: &JobContext, entry: &CollectionEntry) -> bool {
    let store = ctx.store();
    let by_key = match (&entry.extractor, &entry.id) {
        (Some(extractor), Some(id)) => store.is_archived(extractor, id).await,
        _ => Ok(false),
    };
    let found = match (by_key, entry.url.as_deref().and_then(|u| SourceUrl::parse(u).ok())) {
        (Ok(false), Some(url)) => store.archived_by_url(url.as_str()).await.map(|key| key.is_some()),
        (other, _) => other,
    };
    found.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "download archive not readable; the entry is downloaded");
        false
    })
}

/// Renews the lease with the children's counts every second until each is final.
async fn follow(ctx: &JobContext, attempt: &Attempt) -> Outcome {
    let store = ctx.store();
    loop {
        let counts = match store.child_counts(attempt.task_id).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(task_id = %attempt.task_id, error = %e, "children could not be counted");
                tokio::time::sleep(TICK).await;
                continue;
            }
        };
        let all: u64 = counts.values().sum();
        let count = |set: &[TaskStatus]| -> u64 { set.iter().filter_map(|s| counts.get(s)).sum() };
        let finished = count(TaskStatus::FINAL);
        let progress = if all == 0 { 0.0 } else { finished as f64 * 100.0 / all as f64 };
        let detail = ProgressDetail {
            phase: Some(Phase::Following),
            children: Some(counts.clone()),
            ..Default::default()
        };
        match store.heartbeat(attempt.task_id, attempt.number, progress, &detail).await {
            Ok(Lease::Held) => ctx.dispatcher.publish_current(attempt.task_id).await,
            Ok(Lease::Cancelled) => return Outcome::Cancelled,
            Ok(Lease::Lost) => return Outcome::Lost,
            Err(e) => tracing::warn!(task_id = %attempt.task_id, error = %e, "lease renewal failed"),
        }
        if all > 0 && finished == all {
            let completed = count(&[TaskStatus::Completed]);
            // Every child skipped itself as archived (e.g. items imported into the
            // archive, which the listing could not match): nothing was left to do.
            let all_skipped =
                completed == 0 && store.skipped_children(attempt.task_id).await.ok() == Some(all);
            return if completed > 0 || all_skipped {
                Outcome::Completed { files: Vec::new(), output: None }
            } else {
                Outcome::Failed(format!(
                    "no entry was downloaded ({} failed, {} cancelled)",
                    count(&[TaskStatus::Failed]),
                    count(&[TaskStatus::Cancelled])
                ))
            };
        }
        tokio::time::sleep(TICK).await;
    }
}
