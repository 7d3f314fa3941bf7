//! The task store's state machine, fast: every transition and the races between
//! them, on a temporary SQLite file and — when `MEDIAPRO_TEST_PG_URL` names a
//! PostgreSQL server — on a throwaway PostgreSQL database too. No queue, no
//! worker, no HTTP: these run in seconds.

use std::time::Duration;

use mediapro_core::{
    requests::{DownloadSpec, Expansion},
    store::{Cancel, Claim, Lease, Retry, TaskFilter, TaskStore, micros},
    subscription::{CheckOutcome, CheckStatus, Subscription, SubscriptionStatus},
    task::{Phase, ProgressDetail, Task, TaskRequest, TaskStatus, now},
};
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(60);

/// Runs the body once per available store.
macro_rules! on_every_store {
    ($($name:ident => $body:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            for (backend, store, database) in stores().await {
                eprintln!("{} on {backend}", stringify!($name));
                let run: fn(TaskStore) -> _ = $body;
                run(store).await;
                if let Some(database) = database {
                    drop_database(database).await;
                }
            }
        }
    )*};
}

/// A throwaway PostgreSQL database: (server URL, database name).
type Database = (String, String);

async fn drop_database((server, name): Database) {
    let mut conn =
        <sqlx::PgConnection as sqlx::Connection>::connect(&server).await.expect("PostgreSQL answers");
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .expect("drop database");
}

async fn stores() -> Vec<(&'static str, TaskStore, Option<Database>)> {
    // The SQLite file lives as long as the test process (the OS temp dir).
    let dir = std::env::temp_dir().join(format!("mediapro-store-{}", Uuid::new_v4().simple()));
    let sqlite = TaskStore::connect(&format!("sqlite://{}", dir.join("tasks.db").display()), 4)
        .await
        .expect("sqlite store");
    sqlite.migrate().await.expect("migrate sqlite");
    let mut out = vec![("sqlite", sqlite, None)];
    if let Ok(server) = std::env::var("MEDIAPRO_TEST_PG_URL") {
        let name = format!("mediapro_store_{}", Uuid::new_v4().simple());
        let mut conn =
            <sqlx::PgConnection as sqlx::Connection>::connect(&server).await.expect("PostgreSQL answers");
        sqlx::raw_sql(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create database");
        let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
        let pg = TaskStore::connect(&format!("{base}/{name}"), 4).await.expect("pg store");
        pg.migrate().await.expect("migrate pg");
        out.push(("postgres", pg, Some((server, name))));
    }
    out
}

fn download_task() -> Task {
    let spec: DownloadSpec =
        serde_json::from_value(serde_json::json!({"url": "https://media.example/v/1"})).expect("spec");
    Task::new_pending(TaskRequest::Download(spec))
}

async fn pending(store: &TaskStore) -> Task {
    let task = download_task();
    store.insert(&task).await.expect("insert");
    task
}

async fn claim(store: &TaskStore, task: &Task, worker: &str) -> Claim {
    store.claim(task.task_id, worker, LEASE).await.expect("claim")
}

async fn status(store: &TaskStore, task: &Task) -> TaskStatus {
    store.get(task.task_id).await.expect("get").expect("exists").status
}

fn attempt_of(claim: Claim) -> i64 {
    match claim {
        Claim::Claimed { attempt, .. } => attempt,
        other => panic!("expected a claim, got {other:?}"),
    }
}

on_every_store! {
    a_claim_runs_the_kinds_status_and_returns_the_request => |store| Box::pin(async move {
        let task = pending(&store).await;
        match claim(&store, &task, "w1").await {
            Claim::Claimed { attempt, request } => {
                assert_eq!(attempt, 1);
                assert_eq!(request, task.request);
            }
            other => panic!("{other:?}"),
        }
        let row = store.get(task.task_id).await.expect("get").expect("row");
        assert_eq!(row.status, TaskStatus::Downloading);
        assert_eq!(row.worker.as_deref(), Some("w1"));
        // A second delivery of the same job while the lease is fresh: held.
        assert_eq!(claim(&store, &task, "w2").await, Claim::Held);
        // Unknown task: gone.
        assert_eq!(store.claim(Uuid::new_v4(), "w1", LEASE).await.expect("claim"), Claim::Gone);
    });

    two_racing_claims_make_exactly_one_attempt => |store| Box::pin(async move {
        for _ in 0..10 {
            let task = pending(&store).await;
            let (a, b) = tokio::join!(claim(&store, &task, "w1"), claim(&store, &task, "w2"));
            let won = [&a, &b].iter().filter(|c| matches!(c, Claim::Claimed { .. })).count();
            assert_eq!(won, 1, "{a:?} {b:?}");
            assert!([&a, &b].contains(&&Claim::Held));
        }
    });

    a_stale_lease_is_taken_over_and_the_old_attempt_writes_nothing => |store| Box::pin(async move {
        let task = pending(&store).await;
        let first = attempt_of(claim(&store, &task, "w1").await);
        tokio::time::sleep(Duration::from_millis(20)).await;
        // A lease timeout shorter than the lease's age: the first worker is presumed dead.
        let second = attempt_of(store.claim(task.task_id, "w2", Duration::from_millis(1)).await.expect("claim"));
        assert_eq!((first, second), (1, 2));
        assert_eq!(store.heartbeat(task.task_id, first, 50.0, &ProgressDetail::default()).await.expect("hb"), Lease::Lost);
        assert!(!store.complete(task.task_id, first, &["x".into()], None).await.expect("complete"));
        assert!(!store.fail(task.task_id, first, "late").await.expect("fail"));
        let detail = ProgressDetail {
            phase: Some(mediapro_core::task::Phase::Downloading),
            speed_bps: Some(1500.5),
            eta_seconds: Some(3),
            downloaded_bytes: Some(10),
            total_bytes: Some(100),
            children: None,
        };
        assert_eq!(store.heartbeat(task.task_id, second, 10.0, &detail).await.expect("hb"), Lease::Held);
        assert_eq!(store.get(task.task_id).await.expect("get").expect("row").detail, detail);
        assert!(store.complete(task.task_id, second, &["downloads/x/a.mp4".into()], None).await.expect("done"));
        let row = store.get(task.task_id).await.expect("get").expect("row");
        assert_eq!((row.status, row.progress, row.downloaded_files.len()), (TaskStatus::Completed, 100.0, 1));
    });

    cancel_stops_a_pending_task_and_tells_the_running_attempt => |store| Box::pin(async move {
        let queued = pending(&store).await;
        assert!(matches!(store.cancel(queued.task_id).await.expect("cancel"), Cancel::Cancelled(_)));
        assert_eq!(claim(&store, &queued, "w1").await, Claim::Gone, "a cancelled task never starts");

        let running = pending(&store).await;
        let n = attempt_of(claim(&store, &running, "w1").await);
        assert!(matches!(store.cancel(running.task_id).await.expect("cancel"), Cancel::Cancelled(_)));
        assert_eq!(store.heartbeat(running.task_id, n, 1.0, &ProgressDetail::default()).await.expect("hb"), Lease::Cancelled);
        assert!(!store.complete(running.task_id, n, &[], None).await.expect("complete"), "final stays final");
        assert!(matches!(store.cancel(running.task_id).await.expect("cancel"), Cancel::AlreadyFinal(_)));
        assert!(matches!(store.cancel(Uuid::new_v4()).await.expect("cancel"), Cancel::NotFound));
    });

    cancel_racing_a_claim_ends_cancelled_either_way => |store| Box::pin(async move {
        for _ in 0..10 {
            let task = pending(&store).await;
            let (c, cancel) = tokio::join!(claim(&store, &task, "w1"), store.cancel(task.task_id));
            assert!(matches!(cancel.expect("cancel"), Cancel::Cancelled(_)));
            assert_eq!(status(&store, &task).await, TaskStatus::Cancelled);
            if let Claim::Claimed { attempt, .. } = c {
                // Claimed first: the attempt learns of the cancel at its next heartbeat.
                assert_eq!(store.heartbeat(task.task_id, attempt, 0.0, &ProgressDetail::default()).await.expect("hb"), Lease::Cancelled);
            }
        }
    });

    retry_reruns_failed_and_cancelled_tasks_only => |store| Box::pin(async move {
        let task = pending(&store).await;
        let n = attempt_of(claim(&store, &task, "w1").await);
        assert!(store.fail(task.task_id, n, "HTTP Error 404").await.expect("fail"));
        let Retry::Requeued(again) = store.retry(task.task_id).await.expect("retry") else { panic!("requeued") };
        assert_eq!((again.status, again.error.as_deref()), (TaskStatus::Pending, None));
        assert_ne!(again.job_id, task.job_id, "a retry gets a new job id");
        // The stale attempt settling after the retry changes nothing.
        assert!(!store.fail(task.task_id, n, "late").await.expect("fail"));
        assert!(!store.complete(task.task_id, n, &[], None).await.expect("complete"));
        assert_eq!(attempt_of(claim(&store, &again, "w2").await), 2);
        assert!(store.complete(task.task_id, 2, &["f".into()], None).await.expect("complete"));
        assert!(matches!(store.retry(task.task_id).await.expect("retry"), Retry::NotRetryable(_)));
        assert!(matches!(store.retry(Uuid::new_v4()).await.expect("retry"), Retry::NotFound));
    });

    a_transient_failure_requeues_with_a_new_job_and_counts_the_attempt => |store| Box::pin(async move {
        let task = pending(&store).await;
        let n = attempt_of(claim(&store, &task, "w1").await);
        assert!(store.requeue(task.task_id, n, "connection reset", "01JOB").await.expect("requeue"));
        let row = store.get(task.task_id).await.expect("get").expect("row");
        assert_eq!((row.status, row.error.as_deref(), row.job_id.as_str()), (TaskStatus::Pending, Some("connection reset"), "01JOB"));
        assert!(!store.requeue(task.task_id, n, "twice", "01JOC").await.expect("requeue"), "only from running");
        assert_eq!(attempt_of(claim(&store, &task, "w1").await), 2);
    });

    a_task_waiting_for_its_site_stays_pending_with_a_new_job_once_per_job => |store| Box::pin(async move {
        let task = pending(&store).await;
        assert!(store.wait_for_site(task.task_id, &task.job_id, "01WAIT", "slow-site").await.expect("wait"));
        let row = store.get(task.task_id).await.expect("get").expect("row");
        assert_eq!((row.status, row.job_id.as_str(), row.attempts), (TaskStatus::Pending, "01WAIT", 0));
        assert_eq!((row.detail.phase, row.site_profile.as_deref()), (Some(Phase::WaitingForSite), Some("slow-site")));
        // A second delivery of the old job finds it re-queued already.
        assert!(!store.wait_for_site(task.task_id, &task.job_id, "01WAIU", "slow-site").await.expect("wait"));
        // The claim clears the phase; a running task never waits.
        attempt_of(claim(&store, &task, "w1").await);
        assert_eq!(store.get(task.task_id).await.expect("get").expect("row").detail.phase, None);
        assert!(!store.wait_for_site(task.task_id, "01WAIT", "01WAIV", "slow-site").await.expect("wait"));
    });

    fail_pending_and_fail_unfinished_respect_their_guards => |store| Box::pin(async move {
        let task = pending(&store).await;
        assert!(!store.fail_pending(task.task_id, "another-job", "x").await.expect("fail"), "job id guards");
        assert!(store.fail_pending(task.task_id, &task.job_id, "not queued").await.expect("fail"));
        assert_eq!(status(&store, &task).await, TaskStatus::Failed);
        assert!(!store.fail_unfinished(task.task_id, "again").await.expect("fail"), "final stays final");

        let running = pending(&store).await;
        attempt_of(claim(&store, &running, "w1").await);
        assert!(store.fail_unfinished(running.task_id, "undecodable").await.expect("fail"));
        assert_eq!(status(&store, &running).await, TaskStatus::Failed);
    });

    a_chain_completes_the_download_and_records_the_next_task_atomically => |store| Box::pin(async move {
        let task = pending(&store).await;
        let n = attempt_of(claim(&store, &task, "w1").await);
        let mut next = download_task();
        next.parent_task_id = Some(task.task_id);
        assert!(!store.complete_and_chain(task.task_id, n + 1, &["a".into()], &next).await.expect("chain"));
        assert!(store.get(next.task_id).await.expect("get").is_none(), "a stale chain writes nothing");
        assert!(store.complete_and_chain(task.task_id, n, &["a".into()], &next).await.expect("chain"));
        let parent = store.get(task.task_id).await.expect("get").expect("row");
        assert_eq!((parent.status, parent.next_task_id), (TaskStatus::Completed, Some(next.task_id)));
        let child = store.get(next.task_id).await.expect("get").expect("row");
        assert_eq!((child.status, child.parent_task_id), (TaskStatus::Pending, Some(task.task_id)));
    });

    only_pending_tasks_are_deleted_unqueued_and_only_final_ones_by_retention => |store| Box::pin(async move {
        let task = pending(&store).await;
        attempt_of(claim(&store, &task, "w1").await);
        store.delete_pending(task.task_id).await.expect("delete");
        assert!(store.get(task.task_id).await.expect("get").is_some(), "a running task is not deleted");
        assert!(!store.delete_finished(task.task_id).await.expect("delete"));
        assert!(store.complete(task.task_id, 1, &[], None).await.expect("complete"));
        let later = time::OffsetDateTime::now_utc() + time::Duration::seconds(5);
        assert!(store.finished_before(later, 100).await.expect("list").contains(&task.task_id));
        assert!(store.delete_finished(task.task_id).await.expect("delete"));

        let queued = pending(&store).await;
        store.delete_pending(queued.task_id).await.expect("delete");
        assert!(store.get(queued.task_id).await.expect("get").is_none());
    });

    the_reconciler_finds_stale_tasks_and_exactly_one_reassigns => |store| Box::pin(async move {
        let queued = pending(&store).await;
        let running = pending(&store).await;
        attempt_of(claim(&store, &running, "w1").await);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let future = time::OffsetDateTime::now_utc() + time::Duration::seconds(5);
        let stale = store.stale_tasks(future, future, 100).await.expect("stale");
        let ids: Vec<Uuid> = stale.iter().map(|s| s.task_id).collect();
        assert!(ids.contains(&queued.task_id) && ids.contains(&running.task_id), "{ids:?}");
        let mine = stale.iter().find(|s| s.task_id == queued.task_id).expect("queued is stale");
        let (a, b) = tokio::join!(store.reassign_job(mine, "01A"), store.reassign_job(mine, "01B"));
        assert_eq!(u8::from(a.expect("a")) + u8::from(b.expect("b")), 1, "exactly one reconciler wins");
        let past = time::OffsetDateTime::now_utc() - time::Duration::seconds(60);
        assert!(store.stale_tasks(past, past, 100).await.expect("stale").is_empty(), "fresh tasks are not stale");
    });
}

mod outbox {
    use mediapro_core::{
        settings::{WebhookEndpoint, WebhookSettings},
        store::{AfterAttempt, AttemptResult, micros},
        task::now,
        webhooks::{DeliveryStatus, WebhookEvent, WebhookRoutes},
    };

    use super::*;

    fn routes() -> WebhookRoutes {
        let mut settings = WebhookSettings::default();
        settings.endpoints.push(WebhookEndpoint {
            url: "http://127.0.0.1:9/all".into(),
            events: vec![WebhookEvent::TaskCompleted, WebhookEvent::TaskFailed],
            secret: None,
        });
        WebhookRoutes::from_settings(&settings)
    }

    fn result(status_code: Option<u16>) -> AttemptResult {
        AttemptResult { at: micros(now()), status_code, error: None, duration_ms: 3 }
    }

    on_every_store! {
        a_final_status_queues_its_messages_and_one_deliverer_leases_each_attempt => |store| Box::pin(async move {
            let store = store.with_webhooks(routes());
            let mut task = download_task();
            task.callback_url = Some("http://127.0.0.1:9/cb?token=t".into());
            store.insert(&task).await.expect("insert");
            let n = attempt_of(claim(&store, &task, "w1").await);
            assert!(store.deliveries(task.task_id).await.expect("list").is_empty(), "nothing before the end");
            assert!(store.complete(task.task_id, n, &["downloads/x/a.mp4".into()], None).await.expect("complete"));
            // A stale attempt changes nothing, and queues nothing.
            assert!(!store.fail(task.task_id, n, "late").await.expect("fail"));
            let listed = store.deliveries(task.task_id).await.expect("list");
            assert_eq!(listed.len(), 2, "the callback and the endpoint: {listed:?}");
            assert!(listed.iter().all(|d| d.event == "task.completed" && d.status == DeliveryStatus::Pending));

            let due = store.due_deliveries(10).await.expect("due");
            assert_eq!(due.len(), 2);
            let body: serde_json::Value = serde_json::from_str(&due[0].payload).expect("payload is JSON");
            assert_eq!(body["status"], "completed");
            assert_eq!(body["task_id"], task.task_id.to_string());

            // Two deliverers race for the same message: one attempt.
            let lease_until = micros(now()) + 60_000_000;
            let (a, b) = tokio::join!(
                store.lease_delivery(&due[0], lease_until),
                store.lease_delivery(&due[0], lease_until)
            );
            assert_eq!([a.expect("lease"), b.expect("lease")].iter().filter(|w| **w).count(), 1);
            let still_due = store.due_deliveries(10).await.expect("due");
            assert_eq!(still_due.len(), 1, "a leased message is not due");
            assert_ne!(still_due[0].webhook_id, due[0].webhook_id);

            // Attempt 1: a 500, retried at once; attempt 2: delivered.
            let id = &due[0].webhook_id;
            let retry_at = AfterAttempt::RetryAt(micros(now()) - 1);
            assert!(store.record_delivery_attempt(id, 1, &result(Some(500)), retry_at).await.expect("record"));
            let again = store.due_deliveries(10).await.expect("due");
            let mine = again.iter().find(|d| &d.webhook_id == id).expect("due again");
            assert_eq!(mine.attempts, 1);
            assert!(store.lease_delivery(mine, lease_until).await.expect("lease"));
            assert!(store.record_delivery_attempt(id, 2, &result(Some(204)), AfterAttempt::Delivered).await.expect("record"));
            let listed = store.deliveries(task.task_id).await.expect("list");
            let done = listed.iter().find(|d| &d.webhook_id == id).expect("listed");
            assert_eq!(done.status, DeliveryStatus::Delivered);
            assert_eq!(done.next_attempt_at, None);
            let codes: Vec<_> = done.attempts.iter().map(|a| (a.attempt, a.status_code)).collect();
            assert_eq!(codes, vec![(1, Some(500)), (2, Some(204))]);

            // Retention takes the messages with the task.
            assert!(store.delete_finished(task.task_id).await.expect("delete"));
            assert!(store.deliveries(task.task_id).await.expect("list").is_empty());
            assert!(store.due_deliveries(10).await.expect("due").is_empty());
        });

        progress_messages_go_to_subscribed_endpoints_once_per_ten_percent_step => |store| Box::pin(async move {
            let mut settings = WebhookSettings::default();
            settings.endpoints.push(WebhookEndpoint {
                url: "http://127.0.0.1:9/progress".into(),
                events: vec![WebhookEvent::TaskProgress],
                secret: None,
            });
            let store = store.with_webhooks(WebhookRoutes::from_settings(&settings));
            let mut task = download_task();
            task.callback_url = Some("http://127.0.0.1:9/cb".into());
            store.insert(&task).await.expect("insert");
            let n = attempt_of(claim(&store, &task, "w1").await);
            let detail = ProgressDetail::default();
            let mut counts = Vec::new();
            for progress in [5.0, 9.9, 15.0, 17.0, 35.0, 100.0] {
                assert_eq!(store.heartbeat(task.task_id, n, progress, &detail).await.expect("beat"), Lease::Held);
                counts.push(store.deliveries(task.task_id).await.expect("list").len());
            }
            assert_eq!(counts, vec![0, 0, 1, 1, 2, 3]);
            // A stale attempt renews nothing and reports nothing.
            assert_eq!(store.heartbeat(task.task_id, n + 1, 55.0, &detail).await.expect("beat"), Lease::Lost);
            let listed = store.deliveries(task.task_id).await.expect("list");
            assert_eq!(listed.len(), 3);
            assert!(listed.iter().all(|d| d.event == "task.progress" && d.url.ends_with("/progress")), "{listed:?}");
            let due = store.due_deliveries(10).await.expect("due");
            let progress: Vec<f64> = due
                .iter()
                .map(|d| serde_json::from_str::<serde_json::Value>(&d.payload).expect("json")["progress"].as_f64().expect("progress"))
                .collect();
            assert_eq!(progress, vec![15.0, 35.0, 100.0]);
        });

        a_cancel_queues_the_callback_and_a_chain_inherits_it => |store| Box::pin(async move {
            let store = store.with_webhooks(routes());
            let mut task = download_task();
            task.callback_url = Some("http://127.0.0.1:9/cb".into());
            store.insert(&task).await.expect("insert");
            assert!(matches!(store.cancel(task.task_id).await.expect("cancel"), Cancel::Cancelled(_)));
            let listed = store.deliveries(task.task_id).await.expect("list");
            // The endpoint is not subscribed to task.cancelled.
            assert_eq!(listed.iter().map(|d| d.event.as_str()).collect::<Vec<_>>(), vec!["task.cancelled"]);

            let mut first = download_task();
            first.callback_url = Some("http://127.0.0.1:9/cb".into());
            store.insert(&first).await.expect("insert");
            let n = attempt_of(claim(&store, &first, "w1").await);
            let next = download_task();
            assert!(store.complete_and_chain(first.task_id, n, &["a.mp4".into()], &next).await.expect("chain"));
            let chained = store.get(next.task_id).await.expect("get").expect("row");
            assert_eq!(chained.callback_url.as_deref(), Some("http://127.0.0.1:9/cb"));
        });
    }
}

fn playlist_task() -> Task {
    let request: TaskRequest = serde_json::from_value(serde_json::json!({
        "kind": "playlist",
        "url": "https://media.example/feed.xml",
        "items": "2-4,7",
        "entry": {"url": "https://media.example/feed.xml"}
    }))
    .expect("playlist request");
    Task::new_pending(request)
}

/// The children an expansion would make of `parent`: entries 2, 3, 4 and 7.
fn children_of(parent: &Task) -> Vec<Task> {
    [2u64, 3, 4, 7]
        .iter()
        .map(|i| {
            let spec: DownloadSpec = serde_json::from_value(serde_json::json!({
                "url": format!("https://media.example/v/{i}"), "playlist_index": i
            }))
            .expect("spec");
            let mut child = Task::new_pending(TaskRequest::Download(spec));
            child.parent_task_id = Some(parent.task_id);
            child
        })
        .collect()
}

fn expanded(parent: &Task, children: u64) -> TaskRequest {
    let TaskRequest::Playlist(mut spec) = parent.request.clone() else { panic!("a playlist") };
    spec.expansion = Some(Expansion::new(Some(12), children, None, 0));
    TaskRequest::Playlist(spec)
}

on_every_store! {
    a_collection_claims_as_expanding_and_records_its_children_with_its_expansion => |store| Box::pin(async move {
        let parent = playlist_task();
        store.insert(&parent).await.expect("insert");
        let n = attempt_of(claim(&store, &parent, "w1").await);
        assert_eq!(status(&store, &parent).await, TaskStatus::Expanding);
        let kids = children_of(&parent);
        assert!(store.expand(parent.task_id, n, &expanded(&parent, 4), &kids).await.expect("expand"));
        let row = store.get(parent.task_id).await.expect("get").expect("row");
        let TaskRequest::Playlist(spec) = &row.request else { panic!("a playlist") };
        assert_eq!(spec.expansion.as_ref().map(|e| e.children), Some(4));
        assert_eq!(spec.items.as_ref().map(ToString::to_string).as_deref(), Some("2-4,7"));
        let listed = store.children(parent.task_id, &[]).await.expect("children");
        assert_eq!(listed.iter().map(|t| t.task_id).collect::<Vec<_>>(), kids.iter().map(|t| t.task_id).collect::<Vec<_>>());
        assert!(listed.iter().all(|t| t.status == TaskStatus::Pending && t.parent_task_id == Some(parent.task_id)));
        assert_eq!(store.child_counts(parent.task_id).await.expect("counts").get(&TaskStatus::Pending), Some(&4));

        // The list filter pages through them (index tasks_by_parent), and only them.
        let other = pending(&store).await;
        let mut filter = TaskFilter { parent_task_id: Some(parent.task_id), limit: 3, ..TaskFilter::default() };
        let first = store.list(&filter).await.expect("list");
        assert_eq!(first.tasks.len(), 3);
        filter.cursor = first.next_cursor;
        let second = store.list(&filter).await.expect("list");
        assert_eq!((second.tasks.len(), second.next_cursor.is_none()), (1, true));
        assert!(first.tasks.iter().chain(&second.tasks).all(|t| t.task_id != other.task_id));

        // Children finish; the counts follow; the parent completes with no file.
        let a = attempt_of(claim(&store, &kids[0], "w1").await);
        assert!(store.complete(kids[0].task_id, a, &["downloads/x/a.mp4".into()], None).await.expect("complete"));
        let b = attempt_of(claim(&store, &kids[1], "w1").await);
        assert!(store.fail(kids[1].task_id, b, "404").await.expect("fail"));
        let counts = store.child_counts(parent.task_id).await.expect("counts");
        assert_eq!(counts.get(&TaskStatus::Completed), Some(&1));
        assert_eq!(counts.get(&TaskStatus::Failed), Some(&1));
        assert_eq!(counts.get(&TaskStatus::Pending), Some(&2));
        let done = store.children(parent.task_id, &[TaskStatus::Completed]).await.expect("completed");
        assert_eq!(done.len(), 1);

        // Skipped as archived vs cancelled: only the first counts as skipped.
        assert_eq!(store.skipped_children(parent.task_id).await.expect("skipped"), 0);
        let c = attempt_of(claim(&store, &kids[2], "w1").await);
        assert!(store.skip(kids[2].task_id, c, "skipped: generic v4 is in the download archive").await.expect("skip"));
        assert!(matches!(store.cancel(kids[3].task_id).await.expect("cancel"), Cancel::Cancelled(_)));
        assert_eq!(store.child_counts(parent.task_id).await.expect("counts").get(&TaskStatus::Cancelled), Some(&2));
        assert_eq!(store.skipped_children(parent.task_id).await.expect("skipped"), 1);
    });

    an_expansion_after_a_cancel_or_takeover_writes_no_children => |store| Box::pin(async move {
        // Cancelled while listing: the expansion's compare-and-set fails, nothing is inserted.
        let parent = playlist_task();
        store.insert(&parent).await.expect("insert");
        let n = attempt_of(claim(&store, &parent, "w1").await);
        assert!(matches!(store.cancel(parent.task_id).await.expect("cancel"), Cancel::Cancelled(_)));
        assert!(!store.expand(parent.task_id, n, &expanded(&parent, 4), &children_of(&parent)).await.expect("expand"));
        assert!(store.children(parent.task_id, &[]).await.expect("children").is_empty());
        let row = store.get(parent.task_id).await.expect("get").expect("row");
        assert_eq!(row.request, parent.request, "the request is unchanged");

        // Taken over: the old attempt's expansion writes nothing, the new one's does.
        let parent = playlist_task();
        store.insert(&parent).await.expect("insert");
        let old = attempt_of(claim(&store, &parent, "w1").await);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let new = attempt_of(store.claim(parent.task_id, "w2", Duration::from_millis(1)).await.expect("claim"));
        assert!(!store.expand(parent.task_id, old, &expanded(&parent, 4), &children_of(&parent)).await.expect("old"));
        assert!(store.expand(parent.task_id, new, &expanded(&parent, 4), &children_of(&parent)).await.expect("new"));
        assert_eq!(store.children(parent.task_id, &[]).await.expect("children").len(), 4);
    });

    cancelling_and_retrying_children_by_status => |store| Box::pin(async move {
        let parent = playlist_task();
        store.insert(&parent).await.expect("insert");
        let n = attempt_of(claim(&store, &parent, "w1").await);
        let kids = children_of(&parent);
        assert!(store.expand(parent.task_id, n, &expanded(&parent, 4), &kids).await.expect("expand"));
        let a = attempt_of(claim(&store, &kids[0], "w1").await);
        assert!(store.complete(kids[0].task_id, a, &["a.mp4".into()], None).await.expect("complete"));
        let _running = attempt_of(claim(&store, &kids[1], "w1").await);
        // What Dispatcher::cancel does after the parent: every active child, one by one.
        assert!(matches!(store.cancel(parent.task_id).await.expect("cancel"), Cancel::Cancelled(_)));
        let active = store.children(parent.task_id, TaskStatus::ACTIVE).await.expect("active");
        assert_eq!(active.len(), 3, "running and pending ones, not the completed one");
        for child in &active {
            assert!(matches!(store.cancel(child.task_id).await.expect("cancel"), Cancel::Cancelled(_)));
        }
        let counts = store.child_counts(parent.task_id).await.expect("counts");
        assert_eq!((counts.get(&TaskStatus::Cancelled), counts.get(&TaskStatus::Completed)), (Some(&3), Some(&1)));
        // The running child's next lease renewal learns it.
        assert_eq!(
            store.heartbeat(kids[1].task_id, 1, 10.0, &ProgressDetail::default()).await.expect("hb"),
            Lease::Cancelled
        );
        // What Dispatcher::retry does: the retryable children, then the parent.
        let retryable = store.children(parent.task_id, TaskStatus::RETRYABLE).await.expect("retryable");
        assert_eq!(retryable.len(), 3);
        for child in &retryable {
            assert!(matches!(store.retry(child.task_id).await.expect("retry"), Retry::Requeued(_)));
        }
        assert!(matches!(store.retry(parent.task_id).await.expect("retry"), Retry::Requeued(_)));
        assert_eq!(status(&store, &kids[0]).await, TaskStatus::Completed, "a completed child is kept");
        assert_eq!(store.child_counts(parent.task_id).await.expect("counts").get(&TaskStatus::Pending), Some(&3));
        // The parent's re-run finds its expansion recorded in the request it claims.
        match claim(&store, &parent, "w1").await {
            Claim::Claimed { request: TaskRequest::Playlist(spec), .. } => assert!(spec.expansion.is_some()),
            other => panic!("{other:?}"),
        }
    });
}

on_every_store! {
    the_download_archive_outlives_tasks_and_pages_in_order => |store| Box::pin(async move {
        assert!(store.archive("Youtube", "abc", Some("t1"), Some("https://y/abc")).await.expect("archive"));
        assert!(!store.archive("youtube", "abc", Some("t2"), None).await.expect("again"), "first record kept");
        assert!(store.archive("generic", "clip02", None, None).await.expect("archive"));
        assert!(store.is_archived("YouTube", "abc").await.expect("lookup"));
        assert!(!store.is_archived("youtube", "abd").await.expect("lookup"));
        assert_eq!(
            store.archived_by_url("https://y/abc").await.expect("by url"),
            Some(("youtube".into(), "abc".into()))
        );
        assert_eq!(store.archived_by_url("https://y/abd").await.expect("by url"), None);
        let first = store.archive_page(None, 1).await.expect("page");
        assert_eq!((first[0].extractor.as_str(), first[0].media_id.as_str()), ("youtube", "abc"));
        assert_eq!(first[0].task_id.as_deref(), Some("t1"));
        let e = &first[0];
        let rest = store
            .archive_page(Some((e.archived_at, e.extractor.clone(), e.media_id.clone())), 10)
            .await
            .expect("page");
        assert_eq!(rest.iter().map(|e| e.media_id.as_str()).collect::<Vec<_>>(), ["clip02"]);
        assert!(store.unarchive("YOUTUBE", "abc").await.expect("delete"));
        assert!(!store.unarchive("youtube", "abc").await.expect("delete"));
        assert!(!store.is_archived("youtube", "abc").await.expect("lookup"));
    });

    a_skipped_download_ends_cancelled_with_its_reason_and_may_be_retried => |store| Box::pin(async move {
        let task = pending(&store).await;
        let n = attempt_of(claim(&store, &task, "w1").await);
        assert!(!store.skip(task.task_id, n + 1, "skipped: stale attempt").await.expect("stale"));
        assert!(store.skip(task.task_id, n, "skipped: generic v1 is in the download archive").await.expect("skip"));
        let row = store.get(task.task_id).await.expect("get").expect("row");
        assert_eq!(row.status, TaskStatus::Cancelled);
        assert_eq!(row.error.as_deref(), Some("skipped: generic v1 is in the download archive"));
        assert!(row.completed_at.is_some());
        // The reason always starts with SKIPPED, which tells a skipped task from a cancelled one.
        let other = pending(&store).await;
        let n2 = attempt_of(claim(&store, &other, "w1").await);
        assert!(store.skip(other.task_id, n2, "generic v2 is in the download archive").await.expect("skip"));
        let row2 = store.get(other.task_id).await.expect("get").expect("row");
        assert_eq!(row2.error.as_deref(), Some("skipped: generic v2 is in the download archive"));
        assert!(matches!(store.retry(task.task_id).await.expect("retry"), Retry::Requeued(_)));
    });
}

fn site_config(domains: &[&str], check_url: Option<&str>) -> mediapro_core::site_profile::SiteConfig {
    serde_json::from_value(serde_json::json!({
        "domains": domains,
        "max_concurrent": 1,
        "min_interval_seconds": 2.0,
        "sleep_requests_seconds": null,
        "sleep_interval_seconds": null,
        "user_agent": "UA/1",
        "headers": {"Referer": "https://example.com/"},
        "format_id": "b",
        "upstream_proxy": null,
        "check_url": check_url,
    }))
    .expect("config")
}

on_every_store! {
    site_profiles_are_put_listed_matched_and_keep_cookie_values_to_themselves => |store| Box::pin(async move {
        use mediapro_core::store::Saved;
        let c = site_config(&["example.com"], Some("https://www.example.com/check"));
        assert_eq!(store.put_site_profile("ex", &c).await.expect("put"), Saved::Created);
        assert_eq!(store.put_site_profile("ex", &c).await.expect("put"), Saved::Replaced);
        store.put_site_profile("media", &site_config(&["media.example.com"], None)).await.expect("put");
        let p = store.site_profile("ex").await.expect("get").expect("exists");
        assert_eq!((p.name.as_str(), p.domains.as_slice(), p.max_concurrent), ("ex", &["example.com".to_owned()][..], Some(1)));
        assert_eq!(p.min_interval_seconds, Some(2.0));
        assert_eq!((p.healthy, p.cookies.as_ref()), (None, None));
        let names: Vec<String> = store.site_profiles().await.expect("list").into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["ex", "media"]);
        let pick = |host: &'static str| {
            let store = store.clone();
            async move { store.site_profile_for_host(host).await.expect("pick").map(|p| p.name) }
        };
        assert_eq!(pick("www.example.com").await.as_deref(), Some("ex"));
        assert_eq!(pick("a.media.example.com").await.as_deref(), Some("media"));
        assert_eq!(pick("badexample.com").await, None);

        // Cookies: stored whole, summarised in every read but the job's.
        let file = "# Netscape HTTP Cookie File\n.example.com\tTRUE\t/\tFALSE\t0\tsid\tvalue-xyz\n";
        let summary = mediapro_core::site_profile::parse_cookies(file.as_bytes(), mediapro_core::task::now())
            .expect("cookies");
        assert!(store.set_site_cookies("ex", file, &summary).await.expect("cookies"));
        assert!(!store.set_site_cookies("nope", file, &summary).await.expect("no profile"));
        assert_eq!(store.site_cookies("ex").await.expect("read").as_deref(), Some(file));
        let p = store.site_profile("ex").await.expect("get").expect("exists");
        assert_eq!(p.cookies.as_ref().map(|c| c.cookie_count), Some(1));
        assert!(!serde_json::to_string(&p).expect("json").contains("value-xyz"));
        assert!(!serde_json::to_string(&store.site_profiles().await.expect("list")).expect("json").contains("value-xyz"));

        // Health: recorded; kept by a PUT with the same check_url, reset by another.
        assert!(store.record_site_check("ex", Some("HTTP Error 403: Forbidden")).await.expect("check"));
        let p = store.site_profile("ex").await.expect("get").expect("exists");
        assert_eq!((p.healthy, p.check_error.as_deref()), (Some(false), Some("HTTP Error 403: Forbidden")));
        assert!(p.checked_at.is_some());
        assert!(store.record_site_check("ex", None).await.expect("check"));
        store.put_site_profile("ex", &c).await.expect("put");
        let p = store.site_profile("ex").await.expect("get").expect("exists");
        assert_eq!((p.healthy, p.check_error), (Some(true), None));
        assert!(p.cookies.is_some(), "a PUT keeps the cookies");
        store.put_site_profile("ex", &site_config(&["example.com"], Some("https://example.com/other"))).await.expect("put");
        assert_eq!(store.site_profile("ex").await.expect("get").expect("exists").healthy, None);

        // The task's profile.
        let task = pending(&store).await;
        store.set_task_site_profile(task.task_id, Some("ex")).await.expect("set");
        assert_eq!(store.get(task.task_id).await.expect("get").expect("row").site_profile.as_deref(), Some("ex"));

        assert!(store.delete_site_profile("ex").await.expect("delete"));
        assert!(!store.delete_site_profile("ex").await.expect("delete"));
        assert_eq!(store.site_cookies("ex").await.expect("read"), None);
    });
}

/// A subscription every `every` minutes on the playlist of [`playlist_task`],
/// next due at `next_check_at`.
fn subscription(every: i64, next_check_at: i64) -> Subscription {
    let TaskRequest::Playlist(mut spec) = playlist_task().request else { panic!("a playlist") };
    let id = Uuid::new_v4();
    spec.subscription_id = Some(id);
    let mut s = Subscription::new(id, every, *spec);
    s.next_check_at = next_check_at;
    s
}

const MINUTE: i64 = 60_000_000;

async fn reread(store: &TaskStore, s: &Subscription) -> Subscription {
    store.subscription(s.subscription_id).await.expect("get").expect("exists")
}

on_every_store! {
    a_schedule_missed_for_five_periods_runs_one_check_and_the_next_is_a_period_later => |store| Box::pin(async move {
        let t = micros(now());
        // As if every worker had been down for five periods.
        let s = subscription(1, t - 5 * MINUTE);
        store.insert_subscription(&s).await.expect("insert");
        let not_due = subscription(1, t + MINUTE);
        store.insert_subscription(&not_due).await.expect("insert");

        let due = store.due_subscriptions(t, 100).await.expect("due");
        assert_eq!(due.iter().map(|d| d.subscription_id).collect::<Vec<_>>(), [s.subscription_id]);
        // Two schedulers racing on what they read: exactly one starts the check.
        let (a, b) = tokio::join!(
            store.start_check(&due[0], Uuid::new_v4(), t),
            store.start_check(&due[0], Uuid::new_v4(), t)
        );
        let started: Vec<_> = [a.expect("start"), b.expect("start")].into_iter().flatten().collect();
        assert_eq!(started.len(), 1, "one check for five missed periods");
        let check = &started[0];
        let row = reread(&store, &s).await;
        assert_eq!(row.current_task_id, Some(check.task_id));
        assert_eq!(row.next_check_at, t + MINUTE, "now + every, not last + every");
        assert_eq!(row.last_check_at, Some(t));
        // In flight: not due again, at any time.
        assert!(store.due_subscriptions(t + 10 * MINUTE, 100).await.expect("due").iter().all(|d| d.subscription_id != s.subscription_id));

        let listed = CheckOutcome::Listed { found: 4, queued: 3, skipped: 1 };
        assert!(store.finish_check(&row, &listed, 5).await.expect("finish"));
        assert!(!store.finish_check(&row, &listed, 5).await.expect("again"), "recorded once");
        let row = reread(&store, &s).await;
        assert_eq!(row.current_task_id, None);
        // The next is due one period after the check started, and not before.
        for (at, expected) in [(t, 0), (t + MINUTE - 1, 0), (t + MINUTE, 1)] {
            let ids: Vec<_> = store.due_subscriptions(at, 100).await.expect("due").into_iter()
                .filter(|d| d.subscription_id == s.subscription_id).collect();
            assert_eq!(ids.len(), expected, "due at +{} µs", at - t);
        }
        let checks = store.checks_page(s.subscription_id, None, 10).await.expect("checks");
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].status, CheckStatus::Completed);
        assert_eq!((checks[0].found, checks[0].queued, checks[0].skipped), (Some(4), Some(3), Some(1)));
        assert!(checks[0].finished_at.is_some());
    });

    failed_checks_in_a_row_pause_with_the_reason_and_resume_clears_it => |store| Box::pin(async move {
        let t = micros(now());
        let s = subscription(60, t);
        store.insert_subscription(&s).await.expect("insert");
        let failed = CheckOutcome::Failed("HTTP Error 404: Not Found".into());
        for n in 1..=3 {
            let row = reread(&store, &s).await;
            assert_eq!(row.status, SubscriptionStatus::Active, "after {} failures", n - 1);
            assert!(store.reschedule_subscription(s.subscription_id, t).await.expect("check now"));
            let check = store.start_check(&row, Uuid::new_v4(), t).await.expect("start").expect("started");
            let row = reread(&store, &s).await;
            assert_eq!(row.current_task_id, Some(check.task_id));
            assert!(store.finish_check(&row, &failed, 3).await.expect("finish"));
            assert_eq!(reread(&store, &s).await.consecutive_failures, n);
        }
        let row = reread(&store, &s).await;
        assert_eq!(row.status, SubscriptionStatus::Paused);
        let reason = row.paused_reason.clone().expect("reason");
        assert!(reason.contains("3 failed checks in a row") && reason.contains("404"), "{reason}");
        assert!(store.due_subscriptions(t + 1000 * MINUTE, 10).await.expect("due").is_empty(), "paused: never due");
        assert!(!store.reschedule_subscription(s.subscription_id, t).await.expect("check now"), "paused");
        let checks = store.checks_page(s.subscription_id, None, 2).await.expect("checks");
        assert_eq!(checks.len(), 2);
        assert!(checks.iter().all(|c| c.status == CheckStatus::Failed && c.error.as_deref() == Some("HTTP Error 404: Not Found")));
        let older = store.checks_page(s.subscription_id, Some((checks[1].started_at, checks[1].check_id)), 10).await.expect("page");
        assert_eq!(older.len(), 1, "paged: 2 + 1");

        assert!(store.resume_subscription(s.subscription_id).await.expect("resume"));
        let row = reread(&store, &s).await;
        assert_eq!((row.status, row.paused_reason.as_deref(), row.consecutive_failures), (SubscriptionStatus::Active, None, 0));
        assert!(row.next_check_at <= micros(now()), "checked at once");
        // A listed check resets the count.
        let row = reread(&store, &s).await;
        store.start_check(&row, Uuid::new_v4(), micros(now())).await.expect("start").expect("started");
        let row = reread(&store, &s).await;
        assert!(store.finish_check(&row, &failed, 3).await.expect("finish"));
        assert!(store.pause_subscription(s.subscription_id, "paused by a client").await.expect("pause"));
        assert!(store.pause_subscription(s.subscription_id, "again").await.expect("pause"));
        assert_eq!(reread(&store, &s).await.paused_reason.as_deref(), Some("paused by a client"), "first reason kept");

        assert!(store.delete_subscription(s.subscription_id).await.expect("delete"));
        assert!(!store.delete_subscription(s.subscription_id).await.expect("delete"));
        assert!(store.subscription(s.subscription_id).await.expect("get").is_none());
        assert!(store.checks_page(s.subscription_id, None, 10).await.expect("checks").is_empty());
        assert!(!store.pause_subscription(s.subscription_id, "x").await.expect("pause"));
        assert!(!store.resume_subscription(s.subscription_id).await.expect("resume"));
    });

    a_checks_entries_are_known_to_later_checks_unless_their_download_failed => |store| Box::pin(async move {
        let s = subscription(1, micros(now()));
        store.insert_subscription(&s).await.expect("insert");
        let mut parent = Task::new_pending(s.request.clone());
        parent.task_id = Uuid::new_v4();
        store.insert(&parent).await.expect("insert");
        let n = attempt_of(claim(&store, &parent, "w1").await);
        let kids = children_of(&parent);
        assert!(store.expand(parent.task_id, n, &expanded(&parent, 4), &kids).await.expect("expand"));
        let urls = |v: &[&str]| v.iter().map(|u| (*u).to_owned()).collect::<std::collections::HashSet<_>>();
        let all = ["https://media.example/v/2", "https://media.example/v/3", "https://media.example/v/4", "https://media.example/v/7"];
        assert_eq!(store.known_entries(s.subscription_id).await.expect("known"), urls(&all));
        // One child fails: the next check may queue its entry again, up to
        // MAX_ENTRY_CHECKS checks in all.
        let k = attempt_of(claim(&store, &kids[0], "w2").await);
        assert!(store.fail(kids[0].task_id, k, "HTTP Error 500").await.expect("fail"));
        assert_eq!(store.known_entries(s.subscription_id).await.expect("known"), urls(&all[1..]));
        for check in 2..=mediapro_core::subscription::MAX_ENTRY_CHECKS {
            let mut again = Task::new_pending(s.request.clone());
            again.task_id = Uuid::new_v4();
            store.insert(&again).await.expect("insert");
            let n = attempt_of(claim(&store, &again, "w1").await);
            let mut retry = children_of(&again);
            retry.truncate(1);
            assert!(store.expand(again.task_id, n, &expanded(&again, 1), &retry).await.expect("expand"));
            assert!(store.known_entries(s.subscription_id).await.expect("known").contains(all[0]), "queued again");
            let k = attempt_of(claim(&store, &retry[0], "w2").await);
            assert!(store.fail(retry[0].task_id, k, "HTTP Error 500").await.expect("fail"));
            let known = store.known_entries(s.subscription_id).await.expect("known");
            let given_up = check == mediapro_core::subscription::MAX_ENTRY_CHECKS;
            assert_eq!(known.contains(all[0]), given_up, "after check {check}");
        }
        // A plain collection (no subscription) remembers nothing.
        let other = playlist_task();
        store.insert(&other).await.expect("insert");
        let m = attempt_of(claim(&store, &other, "w1").await);
        assert!(store.expand(other.task_id, m, &expanded(&other, 4), &children_of(&other)).await.expect("expand"));
        assert_eq!(store.known_entries(s.subscription_id).await.expect("known").len(), 4);
    });

    subscriptions_page_oldest_first => |store| Box::pin(async move {
        let t = micros(now());
        let mut ids = Vec::new();
        for i in 0..3 {
            let mut s = subscription(5, t);
            s.created_at = t + i;
            store.insert_subscription(&s).await.expect("insert");
            ids.push(s.subscription_id);
        }
        let first = store.subscriptions_page(None, 2).await.expect("page");
        assert_eq!(first.iter().map(|s| s.subscription_id).collect::<Vec<_>>(), ids[..2]);
        let last = &first[1];
        let rest = store.subscriptions_page(Some((last.created_at, last.subscription_id)), 10).await.expect("page");
        assert_eq!(rest.iter().map(|s| s.subscription_id).collect::<Vec<_>>(), ids[2..]);
        assert_eq!(rest[0].request, reread(&store, &rest[0]).await.request);
    });
}
