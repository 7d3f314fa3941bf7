//! Collection jobs (`playlist`): list the selected entries of a playlist, channel
//! or feed flat (one yt-dlp run through the egress guard, bounded by
//! `limits.max_playlist_items` and in time, cancellable), record one child
//! download per entry with the parent's compare-and-set, then follow the children
//! until every one is final. The parent completes if any child completed, else
//! fails. A re-run (lease takeover, client retry) finds the expansion recorded
//! and only follows. A subscription's check (`spec.subscription_id`, see
//! `crates/worker/src/subscriptions.rs`) creates no child for an entry an earlier
//! check queued, and completes at once, listing recorded, when nothing is new.

use std::time::Duration;

use mediapro_core::{
    analyze::{AnalyzeError, run_listing},
    requests::{DownloadSpec, Expansion, PlaylistSpec},
    store::Lease,
    task::{Phase, ProgressDetail, Task, TaskRequest, TaskStatus},
    validate::SourceUrl,
    ytdlp::{ListArgs, PlaylistItems, parse_listing},
};

use super::{
    attempt::{Attempt, Supervisor},
    outcome::Outcome,
};
use crate::context::JobContext;

const TICK: Duration = Duration::from_secs(1);

pub async fn run(ctx: &JobContext, attempt: &Attempt, spec: &PlaylistSpec) -> Outcome {
    let children = match &spec.expansion {
        Some(expansion) => expansion.children,
        None => match expand(ctx, attempt, spec).await {
            Ok(children) => children,
            Err(outcome) => return outcome,
        },
    };
    if children == 0 {
        // A subscription's check that found nothing new: its listing is recorded.
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
    let proxy = ctx
        .egress
        .start_proxy()
        .await
        .map_err(|e| Outcome::Transient(format!("cannot start the egress proxy: {e}")))?;
    let proxy_url = proxy.url();
    let ytdlp_items = items.to_ytdlp();
    let args =
        ListArgs { url: &spec.url, items: &ytdlp_items, socket_timeout_secs: 20, proxy: Some(&proxy_url) }
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
            let archived = match (&e.extractor, &e.id) {
                (Some(extractor), Some(id)) => ctx.store().is_archived(extractor, id).await.unwrap_or(false),
                _ => false,
            };
            if archived {
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
    if children.is_empty() && spec.subscription_id.is_none() && skipped_archived > 0 {
        return Err(Outcome::Skipped("skipped: every selected entry is in the download archive".into()));
    }
    if children.is_empty() && spec.subscription_id.is_none() {
        return Err(Outcome::Failed(format!(
            "the playlist lists no downloadable entry{}",
            spec.items.as_ref().map(|i| format!(" among {i}")).unwrap_or_default()
        )));
    }
    let truncated = spec.items.is_none() && collection.entry_count.is_some_and(|n| n > u64::from(max));
    let expanded = TaskRequest::Playlist(Box::new(PlaylistSpec {
        expansion: Some(Expansion {
            entry_count: collection.entry_count,
            children: children.len() as u64,
            truncated,
            skipped_archived,
            skipped_known,
        }),
        ..spec.clone()
    }));
    match ctx.dispatcher.expand(attempt.task_id, attempt.number, &expanded, &children).await {
        Ok(true) => Ok(children.len() as u64),
        // Cancelled or taken over meanwhile: nothing was written.
        Ok(false) => Err(Outcome::Lost),
        Err(e) => Err(Outcome::Transient(format!("could not record the entries: {e}"))),
    }
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
            return if completed > 0 {
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
