//! Subscriptions (issue 13 item 5): a feed re-checked on a schedule by the one
//! scheduler that holds the Redis lease, among two worker processes; one child
//! per new entry; a missed schedule runs once; failing checks pause it.
//!
//! The fixture is the RSS feed server of `collections.rs` (`FeedServer`), whose
//! `/growing.xml` gains entries when the test says so and logs every request, so a
//! test counts the listings (one per check) as well as the checks recorded.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    collections::{FeedServer, children},
    helpers::{AppOptions, TestApp},
    lifecycle::{ChildGuard, scopeguard},
};

/// Scheduler passes every second in these tests (default 15 s).
fn fast_scheduler(s: &mut mediapro_core::settings::Settings) {
    s.subscriptions.scheduler_interval_seconds = 1;
    s.subscriptions.max_failures = 2;
}

fn two_workers(app: &TestApp) -> (ChildGuard, ChildGuard) {
    (
        scopeguard(app.spawn_worker_process("download,playlist")),
        scopeguard(app.spawn_worker_process("download,playlist")),
    )
}

async fn subscribe(app: &TestApp, body: Value) -> Value {
    let res = app.post_json("/api/subscriptions", &body).await;
    assert_eq!(res.status(), 201, "subscription refused");
    res.json().await.expect("json")
}

async fn post(app: &TestApp, path: &str) -> reqwest::Response {
    app.client.post(format!("{}{path}", app.address)).send().await.expect("request sent")
}

async fn delete(app: &TestApp, path: &str) -> reqwest::Response {
    app.client.delete(format!("{}{path}", app.address)).send().await.expect("request sent")
}

async fn code(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let body: Value = res.json().await.expect("error json");
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

/// Every check of a subscription, newest first (through the paged list).
async fn checks(app: &TestApp, id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/subscriptions/{id}/checks?limit=2");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let res = app.get(&path).await;
        assert_eq!(res.status(), 200);
        let page: Value = res.json().await.expect("json");
        out.extend(page["checks"].as_array().expect("checks").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

/// Waits until `n` checks are recorded and none is running; newest first.
async fn wait_checks(app: &TestApp, id: &str, n: usize, limit: Duration) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let all = checks(app, id).await;
        if all.len() >= n && all.iter().all(|c| c["status"] != "running") {
            return all;
        }
        assert!(start.elapsed() < limit, "{n} checks not recorded after {limit:?}: {all:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn tasks_of_kind(app: &TestApp, kind: &str) -> Vec<Value> {
    let res = app.get(&format!("/api/tasks?kind={kind}&limit=100")).await;
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.expect("json")["tasks"].as_array().expect("tasks").clone()
}

fn time_of(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().expect("a time"), &Rfc3339).expect("RFC 3339")
}

fn feed_listings(fx: &FeedServer) -> usize {
    fx.requests().iter().filter(|p| *p == "/growing.xml").count()
}

/// Waits until every child of the check's task is final; the children.
async fn settled_children(app: &TestApp, check: &Value) -> Vec<Value> {
    let parent = check["task_id"].as_str().expect("task_id");
    app.wait_final(parent, Duration::from_secs(120)).await;
    children(app, parent).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_created_listed_paused_resumed_checked_and_deleted() {
    let app =
        TestApp::spawn_with(AppOptions { start_worker: false, tweak: fast_scheduler, ..Default::default() })
            .await;
    let url = "http://127.0.0.1:9/feed.xml";

    for (body, expected) in [
        (json!({ "url": url }), "invalid_schedule"),
        (json!({ "url": url, "every_minutes": 0 }), "invalid_schedule"),
        (json!({ "url": url, "every_minutes": 43_201 }), "invalid_schedule"),
        (json!({ "url": url, "every_minutes": "often" }), "invalid_request"),
        (json!({ "url": url, "every_minutes": 5, "items": "4-2" }), "invalid_playlist_items"),
        (json!({ "url": "ftp://127.0.0.1/feed", "every_minutes": 5 }), "unsupported_scheme"),
        (json!({ "url": url, "every_minutes": 5, "format_id": "$(x)" }), "invalid_format_id"),
        (json!({ "url": url, "every_minutes": 5, "callback_url": url }), "invalid_request"),
    ] {
        let res = app.post_json("/api/subscriptions", &body).await;
        assert_eq!(code(res).await, (400, expected.to_owned()), "{body}");
    }

    let sub = subscribe(
        &app,
        json!({ "url": url, "every_minutes": 30, "items": "1-3", "format_id": "b",
                "process": { "operations": { "format": "mp3" } } }),
    )
    .await;
    let id = sub["subscription_id"].as_str().expect("id").to_owned();
    assert_eq!(sub["status"], "active");
    assert_eq!(sub["every_minutes"], 30);
    assert_eq!(sub["items"], "1-3");
    assert_eq!(sub["format_id"], "b");
    assert_eq!(sub["operations"]["format"], "mp3");
    assert_eq!(sub["recent_checks"], json!([]));
    assert_eq!(sub["consecutive_failures"], 0);
    assert!(time_of(&sub["next_check_at"]) <= OffsetDateTime::now_utc(), "first check due at once: {sub}");
    let second = subscribe(&app, json!({ "url": url, "every_minutes": 5 })).await;

    // Paged list, oldest first.
    let page: Value = app.get("/api/subscriptions?limit=1").await.json().await.expect("json");
    assert_eq!(page["subscriptions"][0]["subscription_id"], id.as_str());
    let cursor = page["next_cursor"].as_str().expect("a second page");
    let page: Value =
        app.get(&format!("/api/subscriptions?limit=1&cursor={cursor}")).await.json().await.expect("json");
    assert_eq!(page["subscriptions"][0]["subscription_id"], second["subscription_id"]);
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(code(app.get("/api/subscriptions?cursor=nope").await).await, (400, "invalid_cursor".into()));
    assert_eq!(code(app.get("/api/subscriptions?limit=0").await).await, (400, "invalid_filter".into()));

    let paused: Value = {
        let res = post(&app, &format!("/api/subscriptions/{id}/pause")).await;
        assert_eq!(res.status(), 200);
        res.json().await.expect("json")
    };
    assert_eq!(
        (paused["status"].as_str(), paused["paused_reason"].as_str()),
        (Some("paused"), Some("paused by a client"))
    );
    assert_eq!(paused["next_check_at"], Value::Null);
    let (status, c) = code(post(&app, &format!("/api/subscriptions/{id}/check")).await).await;
    assert_eq!((status, c.as_str()), (409, "subscription_paused"));

    let resumed: Value =
        post(&app, &format!("/api/subscriptions/{id}/resume")).await.json().await.expect("json");
    assert_eq!((resumed["status"].as_str(), resumed["paused_reason"].clone()), (Some("active"), Value::Null));
    let res = post(&app, &format!("/api/subscriptions/{id}/check")).await;
    assert_eq!(res.status(), 202);
    let due: Value = res.json().await.expect("json");
    assert!(time_of(&due["next_check_at"]) <= OffsetDateTime::now_utc());

    let res = delete(&app, &format!("/api/subscriptions/{id}")).await;
    assert_eq!(res.status(), 204);
    let unknown = [id.clone(), uuid::Uuid::new_v4().to_string(), "not-a-uuid".into()];
    for id in &unknown {
        assert_eq!(
            code(app.get(&format!("/api/subscriptions/{id}")).await).await,
            (404, "not_found".into()),
            "{id}"
        );
        assert_eq!(
            code(app.get(&format!("/api/subscriptions/{id}/checks")).await).await,
            (404, "not_found".into())
        );
        for action in ["pause", "resume", "check"] {
            let res = post(&app, &format!("/api/subscriptions/{id}/{action}")).await;
            assert_eq!(code(res).await, (404, "not_found".into()), "{action} {id}");
        }
        assert_eq!(
            code(delete(&app, &format!("/api/subscriptions/{id}")).await).await,
            (404, "not_found".into())
        );
    }
    let page: Value = app.get("/api/subscriptions").await.json().await.expect("json");
    assert_eq!(page["subscriptions"].as_array().map(Vec::len), Some(1), "{page}");
}

/// Acceptance: a subscription every minute on a feed that gains an entry, with
/// two worker processes: the first check makes one child per entry, the next
/// scheduled check exactly one for the new entry; no check runs twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_that_gains_an_entry_gets_exactly_one_new_child_with_two_workers_scheduling() {
    let app =
        TestApp::spawn_with(AppOptions { start_worker: false, tweak: fast_scheduler, ..Default::default() })
            .await;
    let fx = FeedServer::serve().await;
    fx.show(2);
    let _workers = two_workers(&app);
    let sub = subscribe(&app, json!({ "url": fx.url("growing.xml"), "every_minutes": 1 })).await;
    let id = sub["subscription_id"].as_str().expect("id").to_owned();

    let first = wait_checks(&app, &id, 1, Duration::from_secs(90)).await;
    let c1 = &first[0];
    eprintln!("first check: {c1}");
    assert_eq!(c1["status"], "completed", "{c1}");
    assert_eq!(
        (c1["found"].as_u64(), c1["queued"].as_u64(), c1["skipped"].as_u64()),
        (Some(2), Some(2), Some(0))
    );
    let kids = settled_children(&app, c1).await;
    assert_eq!(kids.len(), 2);
    assert!(kids.iter().all(|k| k["status"] == "completed"), "{kids:?}");

    fx.show(3);
    let both = wait_checks(&app, &id, 2, Duration::from_secs(120)).await;
    let c2 = &both[0];
    eprintln!("second check: {c2}");
    assert_eq!(c2["status"], "completed", "{c2}");
    assert_eq!(
        (c2["found"].as_u64(), c2["queued"].as_u64(), c2["skipped"].as_u64()),
        (Some(3), Some(1), Some(2))
    );
    let gap = time_of(&c2["started_at"]) - time_of(&c1["started_at"]);
    eprintln!("second check started {gap} after the first");
    assert!(gap >= time::Duration::seconds(60), "not before its period: {gap}");
    let check_task = app.task(c2["task_id"].as_str().expect("task_id")).await;
    assert_eq!(check_task["kind"], "playlist");
    assert_eq!(check_task["subscription_id"], id.as_str());
    // Left out as queued by the first check, or (once downloaded) as archived.
    let e = &check_task["expansion"];
    let skipped = e["skipped_known"].as_u64().unwrap_or(0) + e["skipped_archived"].as_u64().unwrap_or(0);
    assert_eq!(skipped, 2, "{check_task}");
    let new_kids = settled_children(&app, c2).await;
    assert_eq!(new_kids.len(), 1, "one child for one new entry: {new_kids:?}");
    assert_eq!(new_kids[0]["status"], "completed");
    assert_eq!(new_kids[0]["url"], fx.url("media/clip03.mp4"));

    // A few more scheduler passes on both workers: still two checks, two
    // listings of the feed, two check tasks, three downloads.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let all = checks(&app, &id).await;
    let (playlists, downloads) =
        (tasks_of_kind(&app, "playlist").await, tasks_of_kind(&app, "download").await);
    eprintln!(
        "checks recorded: {}, feed listings: {}, check tasks: {}, downloads: {}",
        all.len(),
        feed_listings(&fx),
        playlists.len(),
        downloads.len()
    );
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(feed_listings(&fx), 2, "{:?}", fx.requests());
    assert_eq!(playlists.len(), 2);
    assert_eq!(downloads.len(), 3);
    let mut urls: Vec<_> = downloads.iter().map(|d| d["url"].as_str().expect("url").to_owned()).collect();
    urls.sort();
    urls.dedup();
    assert_eq!(urls.len(), 3, "one download per entry: {urls:?}");
    let subscription: Value = app.get(&format!("/api/subscriptions/{id}")).await.json().await.expect("json");
    let next = time_of(&subscription["next_check_at"]) - time_of(&c2["started_at"]);
    assert_eq!(next, time::Duration::minutes(1), "next = the check's start + every: {subscription}");
}

/// Acceptance (fast form): the subscription's next check set five periods in the
/// past, as if every worker had been down; two workers start → one check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_missed_for_five_periods_while_no_worker_ran_is_checked_once() {
    let app =
        TestApp::spawn_with(AppOptions { start_worker: false, tweak: fast_scheduler, ..Default::default() })
            .await;
    let fx = FeedServer::serve().await;
    fx.show(1);
    let sub = subscribe(&app, json!({ "url": fx.url("growing.xml"), "every_minutes": 1 })).await;
    let id: uuid::Uuid = sub["subscription_id"].as_str().expect("id").parse().expect("uuid");
    let five_periods_ago = mediapro_core::store::micros(OffsetDateTime::now_utc()) - 5 * 60_000_000;
    assert!(app.store.reschedule_subscription(id, five_periods_ago).await.expect("store"));
    let before: Value = app.get(&format!("/api/subscriptions/{id}")).await.json().await.expect("json");
    eprintln!("due since {} (no worker running)", before["next_check_at"]);

    let _workers = two_workers(&app);
    let done = wait_checks(&app, &id.to_string(), 1, Duration::from_secs(90)).await;
    // Several more passes of both schedulers.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let all = checks(&app, &id.to_string()).await;
    eprintln!("checks after the outage: {}, feed listings: {}", all.len(), feed_listings(&fx));
    assert_eq!(all.len(), 1, "one check, not five: {all:?}");
    assert_eq!(all[0]["check_id"], done[0]["check_id"]);
    assert_eq!(all[0]["queued"], 1);
    assert_eq!(feed_listings(&fx), 1);
    assert_eq!(tasks_of_kind(&app, "playlist").await.len(), 1);
    let after: Value = app.get(&format!("/api/subscriptions/{id}")).await.json().await.expect("json");
    let next = time_of(&after["next_check_at"]) - time_of(&all[0]["started_at"]);
    assert_eq!(next, time::Duration::minutes(1), "next = now + every, not the missed slots: {after}");
}

/// A check while the downloads an earlier check queued are still running queues
/// none of their entries again (one child per entry, whatever the timing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_while_earlier_downloads_still_run_queues_none_of_their_entries_again() {
    let app = TestApp::spawn_with(AppOptions { tweak: fast_scheduler, ..Default::default() }).await;
    let fx = FeedServer::serve().await;
    // Two entries whose downloads take about a minute each (`/slow/NN.mp4`).
    let sub =
        subscribe(&app, json!({ "url": fx.url("slow-feed.xml"), "every_minutes": 60, "items": "1-2" })).await;
    let id = sub["subscription_id"].as_str().expect("id").to_owned();
    let first = wait_checks(&app, &id, 1, Duration::from_secs(60)).await;
    assert_eq!(first[0]["queued"], 2, "{first:?}");
    let parent = first[0]["task_id"].as_str().expect("task_id").to_owned();

    assert_eq!(post(&app, &format!("/api/subscriptions/{id}/check")).await.status(), 202);
    let both = wait_checks(&app, &id, 2, Duration::from_secs(60)).await;
    let kids = children(&app, &parent).await;
    eprintln!(
        "second check: {}; the first check's children: {:?}",
        both[0],
        kids.iter().map(|k| &k["status"]).collect::<Vec<_>>()
    );
    assert!(
        kids.iter().all(|k| matches!(k["status"].as_str(), Some("pending" | "downloading"))),
        "the first check's downloads still run: {kids:?}"
    );
    assert_eq!(
        (both[0]["found"].as_u64(), both[0]["queued"].as_u64(), both[0]["skipped"].as_u64()),
        (Some(2), Some(0), Some(2))
    );
    let second = app.task(both[0]["task_id"].as_str().expect("task_id")).await;
    assert_eq!(second["status"], "completed", "nothing new: done at once: {second}");
    assert!(children(&app, both[0]["task_id"].as_str().expect("task_id")).await.is_empty());
    assert_eq!(tasks_of_kind(&app, "download").await.len(), 2);

    let res = delete(&app, &format!("/api/tasks/{parent}")).await;
    assert_eq!(res.status(), 200, "cancel the slow downloads");
}

/// Acceptance: a subscription whose URL keeps failing is paused after
/// `subscriptions.max_failures` (2 here) failed checks with the reason; resume
/// clears it and checks again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_failing_twice_in_a_row_is_paused_with_the_reason_and_resume_clears_it() {
    let app = TestApp::spawn_with(AppOptions { tweak: fast_scheduler, ..Default::default() }).await;
    let fx = FeedServer::serve().await;
    let sub = subscribe(&app, json!({ "url": fx.url("gone.xml"), "every_minutes": 60 })).await;
    let id = sub["subscription_id"].as_str().expect("id").to_owned();

    let first = wait_checks(&app, &id, 1, Duration::from_secs(60)).await;
    assert_eq!(first[0]["status"], "failed", "{first:?}");
    assert!(first[0]["error"].as_str().is_some_and(|e| e.contains("404")), "{first:?}");
    let after_one: Value = app.get(&format!("/api/subscriptions/{id}")).await.json().await.expect("json");
    assert_eq!(
        (after_one["status"].as_str(), after_one["consecutive_failures"].as_i64()),
        (Some("active"), Some(1))
    );

    // "Check now" instead of waiting an hour.
    assert_eq!(post(&app, &format!("/api/subscriptions/{id}/check")).await.status(), 202);
    wait_checks(&app, &id, 2, Duration::from_secs(60)).await;
    let paused: Value = app.get(&format!("/api/subscriptions/{id}")).await.json().await.expect("json");
    eprintln!("after two failed checks: {paused}");
    assert_eq!(paused["status"], "paused");
    assert_eq!(paused["consecutive_failures"], 2);
    let reason = paused["paused_reason"].as_str().expect("a reason");
    assert!(reason.contains("2 failed checks in a row") && reason.contains("404"), "{reason}");
    assert_eq!(paused["recent_checks"].as_array().map(Vec::len), Some(2));
    let (status, c) = code(post(&app, &format!("/api/subscriptions/{id}/check")).await).await;
    assert_eq!((status, c.as_str()), (409, "subscription_paused"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(checks(&app, &id).await.len(), 2, "no check while paused");

    let resumed: Value =
        post(&app, &format!("/api/subscriptions/{id}/resume")).await.json().await.expect("json");
    assert_eq!(resumed["status"], "active");
    assert_eq!(resumed["paused_reason"], Value::Null);
    assert_eq!(resumed["consecutive_failures"], 0);
    // Checked again at once (and failing again: one failure, still active).
    wait_checks(&app, &id, 3, Duration::from_secs(60)).await;
    let again: Value = app.get(&format!("/api/subscriptions/{id}")).await.json().await.expect("json");
    assert_eq!((again["status"].as_str(), again["consecutive_failures"].as_i64()), (Some("active"), Some(1)));
}

/// Acceptance, the real thing (about 7 minutes; run by hand):
/// `cargo build --workspace && cargo nextest run -p mediapro-e2e --run-ignored only
/// -E 'test(/real_five_minute_outage/)' --no-capture`.
/// Two workers check a feed every minute; both are stopped for five minutes,
/// then started: one check runs, not five.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "takes about 7 minutes of real time"]
async fn a_real_five_minute_outage_of_every_worker_runs_one_check_not_five() {
    let app =
        TestApp::spawn_with(AppOptions { start_worker: false, tweak: fast_scheduler, ..Default::default() })
            .await;
    let fx = FeedServer::serve().await;
    fx.show(1);
    let t0 = Instant::now();
    let at = || format!("{:>5.1} s", t0.elapsed().as_secs_f64());
    let workers = two_workers(&app);
    let sub = subscribe(&app, json!({ "url": fx.url("growing.xml"), "every_minutes": 1 })).await;
    let id = sub["subscription_id"].as_str().expect("id").to_owned();
    let first = wait_checks(&app, &id, 1, Duration::from_secs(90)).await;
    settled_children(&app, &first[0]).await;
    eprintln!("{} first check: {}", at(), first[0]);

    drop(workers);
    eprintln!("{} both workers stopped; feed gains an entry; waiting 5 minutes", at());
    fx.show(2);
    tokio::time::sleep(Duration::from_secs(300)).await;
    let during = checks(&app, &id).await.len();
    eprintln!("{} checks recorded during the outage: {}", at(), during - 1);
    assert_eq!(during, 1);

    let restarted = OffsetDateTime::now_utc();
    let _workers = two_workers(&app);
    eprintln!("{} both workers started", at());
    let after = wait_checks(&app, &id, 2, Duration::from_secs(90)).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let all = checks(&app, &id).await;
    for c in all.iter().rev() {
        eprintln!(
            "check started {} status {} found {} queued {} skipped {}",
            c["started_at"], c["status"], c["found"], c["queued"], c["skipped"]
        );
    }
    eprintln!("{} checks: {}, feed listings: {}", at(), all.len(), feed_listings(&fx));
    assert_eq!(all.len(), 2, "one check after the outage, not five: {all:?}");
    assert!(time_of(&after[0]["started_at"]) >= restarted);
    assert_eq!(after[0]["queued"], 1);
    assert_eq!(feed_listings(&fx), 2);
}
