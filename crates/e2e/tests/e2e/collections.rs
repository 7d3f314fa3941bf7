//! Collections (issue 13): analyze of a feed lists its entries flat, a
//! collection download makes one child per selected entry, cancel reaches every
//! child, and the completed children come back as one ZIP.
//!
//! The fixture is an RSS feed (yt-dlp's generic extractor expands it as a
//! playlist of its enclosures) served by a local server that logs every path it
//! is asked for, so a test can show that listing fetched no media.

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use crate::helpers::{TestApp, make_clip_with_tone, media, pids_working_in, probe};

const LIMIT: Duration = Duration::from_secs(120);
const ENTRIES: usize = 12;

/// Twelve distinct 1 s clips (a tone of its own each), made once per test binary.
pub(crate) fn clips() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-collection-v1");
        std::fs::create_dir_all(&dir).expect("clip dir");
        for i in 1..=ENTRIES {
            let path = dir.join(format!("clip{i:02}.mp4"));
            if !path.exists() {
                let tmp = dir.join(format!(".clip{i:02}.{}.mp4", std::process::id()));
                make_clip_with_tone(&tmp, "160x90", 1, 200 + 50 * i as u32);
                std::fs::rename(&tmp, &path).expect("publish clip");
            }
        }
        dir
    })
}

/// Entries of `/big-feed.xml`.
const BIG: usize = 10_000;

/// An RSS feed of `targets` (entry `i` titled "Entry i", 1 s long).
fn feed_xml(base: &str, title: &str, targets: impl Iterator<Item = (usize, String)>) -> String {
    let items: String = targets
        .map(|(i, target)| {
            format!(
                "<item><title>Entry {i}</title><enclosure url=\"{target}\" type=\"video/mp4\" \
                 length=\"1\"/><itunes:duration>00:00:01</itunes:duration></item>\n"
            )
        })
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rss version=\"2.0\" \
         xmlns:itunes=\"http://www.itunes.com/dtds/podcast-1.0.dtd\"><channel><title>{title}</title>\
         <description>fixture</description><link>{base}/</link>\n{items}</channel></rss>\n"
    )
}

/// The feed server: `/feed.xml` (12 items → `/media/clipNN.mp4`), `/slow-feed.xml`
/// (12 items → `/slow/NN.mp4`, the 60 s clip sent at about 100 KB/s),
/// `/growing.xml` (the first `shown` clips, newest first, as a podcast lists
/// them), `/big-feed.xml` (10 000 items → `/big/N.mp4`, each the first clip), and a
/// log of every requested path.
pub(crate) struct FeedServer {
    base: String,
    log: Arc<Mutex<Vec<String>>>,
    shown: Arc<AtomicUsize>,
}

impl FeedServer {
    pub(crate) async fn serve() -> Self {
        let dir = clips().clone();
        let long = media().dir.join("long.mp4");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let shown = Arc::new(AtomicUsize::new(ENTRIES));
        let fast = feed_xml(
            &base,
            "Twelve clips",
            (1..=ENTRIES).map(|i| (i, format!("{base}/media/clip{i:02}.mp4"))),
        );
        let slow = feed_xml(
            &base,
            "Twelve slow clips",
            (1..=ENTRIES).map(|i| (i, format!("{base}/slow/{i:02}.mp4"))),
        );
        let big =
            feed_xml(&base, "Ten thousand clips", (1..=BIG).map(|i| (i, format!("{base}/big/{i}.mp4"))));
        let logged = log.clone();
        let (grow_base, grow_shown) = (base.clone(), shown.clone());
        let server = HttpServer::new(move || {
            let logged = logged.clone();
            let (fast, slow, big, long) = (fast.clone(), slow.clone(), big.clone(), long.clone());
            let (grow_base, grow_shown) = (grow_base.clone(), grow_shown.clone());
            let first_clip = dir.join("clip01.mp4");
            App::new()
                .wrap_fn(move |req, srv| {
                    logged.lock().expect("log").push(req.path().to_owned());
                    actix_web::dev::Service::call(srv, req)
                })
                .route(
                    "/feed.xml",
                    web::get().to(move || {
                        let body = fast.clone();
                        async move { HttpResponse::Ok().content_type("application/rss+xml").body(body) }
                    }),
                )
                .route(
                    "/slow-feed.xml",
                    web::get().to(move || {
                        let body = slow.clone();
                        async move { HttpResponse::Ok().content_type("application/rss+xml").body(body) }
                    }),
                )
                .route(
                    "/growing.xml",
                    web::get().to(move || {
                        let n = grow_shown.load(Ordering::SeqCst);
                        let targets = (1..=n).rev().map(|i| (i, format!("{grow_base}/media/clip{i:02}.mp4")));
                        let body = feed_xml(&grow_base, "A growing feed", targets);
                        async move { HttpResponse::Ok().content_type("application/rss+xml").body(body) }
                    }),
                )
                .route(
                    "/big-feed.xml",
                    web::get().to(move || {
                        let body = big.clone();
                        async move { HttpResponse::Ok().content_type("application/rss+xml").body(body) }
                    }),
                )
                .route(
                    "/big/{n}.mp4",
                    web::get().to(move || {
                        let bytes = std::fs::read(&first_clip).expect("clip01");
                        async move { HttpResponse::Ok().content_type("video/mp4").body(bytes) }
                    }),
                )
                .route(
                    "/slow/{n}.mp4",
                    web::get().to(move |_req: HttpRequest| {
                        let bytes = std::fs::read(&long).expect("long clip");
                        async move {
                            let len = bytes.len();
                            let chunks = futures::stream::unfold(0usize, move |at| {
                                let bytes = bytes.clone();
                                async move {
                                    if at >= bytes.len() {
                                        return None;
                                    }
                                    tokio::time::sleep(Duration::from_millis(100)).await;
                                    let end = (at + 10 * 1024).min(bytes.len());
                                    Some((
                                        Ok::<_, std::io::Error>(web::Bytes::from(bytes[at..end].to_vec())),
                                        end,
                                    ))
                                }
                            });
                            HttpResponse::Ok()
                                .content_type("video/mp4")
                                .insert_header(("content-length", len.to_string()))
                                .streaming(chunks)
                        }
                    }),
                )
                .service(actix_files::Files::new("/media", dir.clone()))
        })
        .workers(2)
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        FeedServer { base, log, shown }
    }

    /// `/growing.xml` lists the first `n` clips from now on (also used by
    /// `subscriptions.rs`).
    pub(crate) fn show(&self, n: usize) {
        assert!(n <= ENTRIES);
        self.shown.store(n, Ordering::SeqCst);
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    pub(crate) fn requests(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }

    pub(crate) fn media_requests(&self) -> Vec<String> {
        self.requests().into_iter().filter(|p| p.ends_with(".mp4")).collect()
    }
}

/// The children of a collection, through `GET /api/tasks?parent_task_id=` (every page).
pub(crate) async fn children(app: &TestApp, parent: &str) -> Vec<Value> {
    children_by(app, parent, 5).await
}

/// The same, `limit` a page.
async fn children_by(app: &TestApp, parent: &str, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/tasks?parent_task_id={parent}&limit={limit}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let res = app.get(&path).await;
        assert_eq!(res.status(), 200);
        let page: Value = res.json().await.expect("json");
        out.extend(page["tasks"].as_array().expect("tasks").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyze_of_a_feed_lists_its_entries_flat_and_pages_without_fetching_media() {
    let app =
        TestApp::spawn_with(crate::helpers::AppOptions { start_worker: false, ..Default::default() }).await;
    let fx = FeedServer::serve().await;

    let res = app.analyze(&fx.url("feed.xml")).await;
    assert_eq!(res.status(), 200);
    let listing: Value = res.json().await.expect("json");
    assert_eq!(listing["kind"], "playlist", "{listing}");
    assert_eq!(listing["title"], "Twelve clips");
    assert_eq!(listing["entry_count"], 12);
    assert_eq!(listing["truncated"], false);
    assert_eq!(listing["next_cursor"], Value::Null);
    let entries = listing["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 12);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["index"], i + 1);
        assert_eq!(e["title"], format!("Entry {}", i + 1));
        assert_eq!(e["duration"].as_f64(), Some(1.0));
        assert_eq!(e["url"], fx.url(&format!("media/clip{:02}.mp4", i + 1)));
    }

    // Paged: 5 + 5 + 2, each page its own listing run.
    let mut seen = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let body = json!({ "url": fx.url("feed.xml"), "page_size": 5, "cursor": cursor });
        let page: Value = app.post_json("/api/analyze", &body).await.json().await.expect("json");
        seen.extend(page["entries"].as_array().expect("entries").iter().map(|e| e["index"].as_u64()));
        cursor = page["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(seen, (1..=12).map(Some).collect::<Vec<_>>());
    let bad = app.post_json("/api/analyze", &json!({ "url": fx.url("feed.xml"), "cursor": "nope" })).await;
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.json::<Value>().await.expect("json")["code"], "invalid_cursor");

    let log = fx.requests();
    eprintln!("fixture server request log: {log:?}");
    assert!(fx.media_requests().is_empty(), "listing fetched media: {log:?}");
    assert_eq!(log.iter().filter(|p| *p == "/feed.xml").count(), 4, "{log:?}");

    // A single video keeps its answer, now marked as one.
    let video: Value = app.analyze(&fx.url("media/clip01.mp4")).await.json().await.expect("json");
    assert_eq!(video["kind"], "video", "{video}");
    assert!(!video["formats"].as_array().expect("formats").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_download_of_items_2_4_and_7_makes_four_children_and_one_zip() {
    let app = TestApp::spawn().await;
    let fx = FeedServer::serve().await;

    let bad = app.download(json!({ "url": fx.url("feed.xml"), "playlist": { "items": "4-2" } })).await;
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.json::<Value>().await.expect("json")["code"], "invalid_playlist_items");

    let id =
        app.submit_download(json!({ "url": fx.url("feed.xml"), "playlist": { "items": "2-4,7" } })).await;
    let parent = app.wait_final(&id, LIMIT).await;
    assert_eq!(parent["status"], "completed", "{parent}");
    assert_eq!(parent["kind"], "playlist");
    assert_eq!(parent["progress"].as_f64(), Some(100.0));
    assert_eq!(parent["playlist_items"], "2-4,7");
    assert_eq!(
        parent["expansion"],
        json!({ "entry_count": 12, "children": 4, "truncated": false, "skipped_archived": 0 })
    );
    assert_eq!(parent["children"], json!({ "completed": 4 }), "{parent}");

    let kids = children(&app, &id).await;
    assert_eq!(kids.len(), 4);
    let mut served = Vec::new();
    for kid in &kids {
        assert_eq!(kid["status"], "completed", "{kid}");
        assert_eq!(kid["kind"], "download");
        assert_eq!(kid["parent_task_id"], id.as_str());
        let file = app.storage_root().join(kid["downloaded_files"][0].as_str().expect("file"));
        let (duration, size) = probe(&file);
        assert!((duration - 1.0).abs() < 0.2, "duration {duration}");
        assert_eq!(size, Some((160, 90)));
        served.push(std::fs::read(&file).expect("child file"));
    }
    let mut urls: Vec<String> = kids.iter().map(|k| k["url"].as_str().expect("url").to_owned()).collect();
    urls.sort();
    let want: Vec<String> = [2, 3, 4, 7].iter().map(|i| fx.url(&format!("media/clip{i:02}.mp4"))).collect();
    assert_eq!(urls, want);
    let mut fetched = fx.media_requests();
    fetched.sort();
    fetched.dedup();
    assert_eq!(fetched.len(), 4, "only the selected entries were downloaded: {fetched:?}");

    // One ZIP of the four files, stored, with a Content-Length, byte-identical.
    let res = app.get(&format!("/api/download-result/{id}")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/zip");
    let length: usize =
        res.headers()["content-length"].to_str().expect("ascii").parse().expect("content-length");
    let zip = res.bytes().await.expect("zip body");
    assert_eq!(zip.len(), length);
    let dir = tempfile::tempdir().expect("tempdir");
    let zip_path = dir.path().join("c.zip");
    std::fs::write(&zip_path, &zip).expect("write zip");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile, json\n\
             z = zipfile.ZipFile(sys.argv[1])\n\
             assert z.testzip() is None\n\
             print(json.dumps([[i.filename, i.compress_type, i.file_size, z.read(i).hex()] for i in z.infolist()]))",
        ])
        .arg(&zip_path)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: Vec<(String, u64, u64, String)> = serde_json::from_slice(&out.stdout).expect("listing");
    let names: Vec<&str> = listed.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names, ["002-clip02.mp4", "003-clip03.mp4", "004-clip04.mp4", "007-clip07.mp4"]);
    let mut zipped: Vec<Vec<u8>> = listed
        .iter()
        .map(|(_, method, size, hex)| {
            assert_eq!(*method, 0, "stored, not compressed");
            let bytes = hex_decode(hex);
            assert_eq!(bytes.len() as u64, *size);
            bytes
        })
        .collect();
    zipped.sort();
    served.sort();
    assert_eq!(zipped, served);
    for (i, (name, ..)) in listed.iter().enumerate() {
        let n: usize = name[..3].parse().expect("index prefix");
        let original = std::fs::read(clips().join(format!("clip{n:02}.mp4"))).expect("clip");
        assert_eq!(hex_decode(&listed[i].3), original, "{name} is the served file");
    }

    // The download archive remembers the four items, as yt-dlp keys them, and
    // outlives the tasks; it exports, forgets and imports yt-dlp archive lines.
    let page: Value = app.get("/api/archive?limit=3").await.json().await.expect("json");
    assert_eq!(page["entries"].as_array().map(Vec::len), Some(3));
    let rest: Value = app
        .get(&format!("/api/archive?cursor={}", page["next_cursor"].as_str().expect("cursor")))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(rest["next_cursor"], Value::Null);
    let ids: Vec<String> = page["entries"]
        .as_array()
        .into_iter()
        .chain(rest["entries"].as_array())
        .flatten()
        .map(|e| format!("{} {}", e["extractor"].as_str().expect("e"), e["media_id"].as_str().expect("id")))
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ["generic clip02", "generic clip03", "generic clip04", "generic clip07"]);
    let kid_ids: Vec<&str> = kids.iter().map(|k| k["task_id"].as_str().expect("id")).collect();
    assert!(page["entries"][0]["task_id"].as_str().is_some_and(|t| kid_ids.contains(&t)), "{page}");
    let export = app.get("/api/archive/export").await.text().await.expect("text");
    let mut lines: Vec<&str> = export.lines().collect();
    lines.sort();
    assert_eq!(lines, sorted);
    let res = app
        .client
        .delete(format!("{}/api/archive/Generic/clip03", app.address))
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), 204);
    let res = app
        .client
        .delete(format!("{}/api/archive/generic/clip03", app.address))
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), 404);
    let imported: Value = app
        .post_json(
            "/api/archive/import",
            &json!({ "archive": "generic clip03\nYoutube dQw4w9WgXcQ\n\nbad line here\ngeneric clip02\n" }),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(imported, json!({ "imported": 2, "already_archived": 1, "invalid_lines": [4] }));
    assert_eq!(app.get("/api/archive/export").await.text().await.expect("text").lines().count(), 5);

    // skip_archived: an archived item is not downloaded again; the task says why.
    let single =
        app.submit_download(json!({ "url": fx.url("media/clip02.mp4"), "skip_archived": true })).await;
    let single = app.wait_final(&single, LIMIT).await;
    assert_eq!(single["status"], "cancelled", "{single}");
    assert_eq!(single["error"], "skipped: generic clip02 is in the download archive");
    assert_eq!(single["downloaded_files"], json!([]));
    // In a collection: entries 1-3, of which 2 and 3 are archived. The feed lists
    // no ids: entry 2 is found by the URL its download recorded and gets no child;
    // entry 3 was imported (no URL), so its child takes the key and skips itself.
    let id = app
        .submit_download(
            json!({ "url": fx.url("feed.xml"), "skip_archived": true, "playlist": { "items": "1-3" } }),
        )
        .await;
    let parent = app.wait_final(&id, LIMIT).await;
    assert_eq!(parent["status"], "completed", "{parent}");
    assert_eq!(parent["children"], json!({ "completed": 1, "cancelled": 1 }), "{parent}");
    assert_eq!(parent["expansion"]["skipped_archived"], 1, "{parent}");
    assert_eq!(parent["expansion"]["note"], "1 entry skipped: already in the download archive");
    let mut kids = children(&app, &id).await;
    kids.sort_by_key(|k| k["playlist_index"].as_u64());
    assert_eq!(kids.iter().map(|k| k["playlist_index"].as_u64()).collect::<Vec<_>>(), [Some(1), Some(3)]);
    assert_eq!(kids[0]["status"], "completed");
    assert!(kids[1]["error"].as_str().is_some_and(|e| e.starts_with("skipped: generic clip03")), "{kids:?}");
    let export = app.get("/api/archive/export").await.text().await.expect("text");
    assert!(export.lines().any(|l| l == "generic clip01"), "the new download is archived: {export}");

    // Entries archived by an import (no URL, so the listing cannot match them): each
    // child skips itself, and the collection completes, nothing being left to do.
    let imported: Value = app
        .post_json("/api/archive/import", &json!({ "archive": "generic clip05\ngeneric clip06\n" }))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(imported["imported"], 2);
    let id = app
        .submit_download(
            json!({ "url": fx.url("feed.xml"), "skip_archived": true, "playlist": { "items": "5-6" } }),
        )
        .await;
    let parent = app.wait_final(&id, LIMIT).await;
    assert_eq!(parent["status"], "completed", "{parent}");
    assert_eq!(parent["children"], json!({ "cancelled": 2 }), "{parent}");
    assert_eq!(parent["expansion"]["skipped_archived"], 0);
    let kids = children(&app, &id).await;
    assert!(
        kids.iter().all(|k| k["error"].as_str().is_some_and(|e| e.starts_with("skipped: generic clip0"))),
        "{kids:?}"
    );
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_collection_stops_every_child_at_once_and_none_starts_later() {
    let app = TestApp::spawn().await;
    let fx = FeedServer::serve().await;

    let id = app.submit_download(json!({ "url": fx.url("slow-feed.xml"), "playlist": {} })).await;
    // Wait for the first child to run.
    let start = Instant::now();
    loop {
        let kids = children(&app, &id).await;
        if kids.iter().any(|k| k["status"] == "downloading") && !fx.media_requests().is_empty() {
            assert_eq!(kids.len(), 12);
            break;
        }
        assert!(start.elapsed() < LIMIT, "no child started: {kids:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The check below is not vacuous: a child's yt-dlp (spawned, or forked by the
    // warm host) runs in its task folder now.
    let root = app.storage_root().to_path_buf();
    let running = Instant::now();
    while pids_working_in(&root).is_empty() {
        assert!(running.elapsed() < Duration::from_secs(5), "no child's yt-dlp runs in its task folder");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("processes in this test's task folders before the cancel: {:?}", pids_working_in(&root));
    let res = app.client.delete(format!("{}/api/tasks/{id}", app.address)).send().await.expect("delete");
    assert_eq!(res.status(), 200);
    let cancelled_at = Instant::now();
    // Every child is final at once (the cancel answered after cancelling them)…
    let kids = children(&app, &id).await;
    assert!(kids.iter().all(|k| k["status"] == "cancelled"), "{kids:?}");
    // …and within 2 s no child's yt-dlp still runs (no process is left in a task
    // folder of this test, spawned or forked by the warm host), and none starts later.
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(cancelled_at.elapsed())).await;
    assert_eq!(pids_working_in(&root), Vec::<i32>::new(), "a child's yt-dlp still runs 2 s after the cancel");
    let requests_then = fx.media_requests().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let kids = children(&app, &id).await;
    assert!(
        kids.iter().all(|k| k["status"] == "cancelled" && k["downloaded_files"] == json!([])),
        "{kids:?}"
    );
    assert_eq!(fx.media_requests().len(), requests_then, "a child started after the cancel");
    assert_eq!(pids_working_in(&root), Vec::<i32>::new(), "a child's yt-dlp started after the cancel");
    let parent = app.task(&id).await;
    assert_eq!(parent["status"], "cancelled");

    // Retry: only the failed and cancelled children run again (here: all of them).
    let retried = app.post_json(&format!("/api/tasks/{id}/retry"), &json!({})).await;
    assert_eq!(retried.status(), 202);
    let kids = children(&app, &id).await;
    assert!(kids.iter().all(|k| k["status"] != "cancelled"), "{kids:?}");
    let res = app.client.delete(format!("{}/api/tasks/{id}", app.address)).send().await.expect("delete");
    assert_eq!(res.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_longer_than_max_playlist_items_is_cut_and_says_so() {
    let app = TestApp::spawn_with(crate::helpers::AppOptions {
        tweak: |s| s.limits.max_playlist_items = 3,
        ..Default::default()
    })
    .await;
    let fx = FeedServer::serve().await;

    let listing: Value = app.analyze(&fx.url("feed.xml")).await.json().await.expect("json");
    assert_eq!((listing["entry_count"].as_u64(), listing["truncated"].as_bool()), (Some(3), Some(true)));
    assert_eq!(listing["entries"].as_array().map(Vec::len), Some(3));
    assert_eq!(listing["next_cursor"], Value::Null);
    let too_many = app.download(json!({ "url": fx.url("feed.xml"), "playlist": { "items": "1-4" } })).await;
    assert_eq!(too_many.status(), 400);
    assert_eq!(too_many.json::<Value>().await.expect("json")["code"], "invalid_playlist_items");

    let id = app.submit_download(json!({ "url": fx.url("feed.xml"), "playlist": { "reverse": true } })).await;
    let parent = app.wait_final(&id, LIMIT).await;
    assert_eq!(parent["status"], "completed", "{parent}");
    assert_eq!(parent["playlist_items"], "all");
    assert_eq!(
        parent["expansion"],
        json!({
            "entry_count": 12, "children": 3, "truncated": true, "skipped_archived": 0,
            "note": "cut at 3 of 12 entries (limits.max_playlist_items)"
        })
    );
    let mut kids = children(&app, &id).await;
    kids.sort_by_key(|k| k["playlist_index"].as_u64());
    let urls: Vec<&str> = kids.iter().map(|k| k["url"].as_str().expect("url")).collect();
    let want: Vec<String> = (1..=3).map(|i| fx.url(&format!("media/clip{i:02}.mp4"))).collect();
    assert_eq!(urls, want);
    // `reverse`: the last entry was created (and queued) first.
    let created: Vec<time::OffsetDateTime> = kids
        .iter()
        .map(|k| {
            let t = k["created_at"].as_str().expect("created_at");
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).expect("RFC 3339")
        })
        .collect();
    assert!(created[2] <= created[1] && created[1] <= created[0], "{created:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_skip_archived_download_makes_only_the_new_entries_and_ytdlp_reads_the_export_back() {
    let app = TestApp::spawn().await;
    let fx = FeedServer::serve().await;
    let feed = fx.url("growing.xml");
    let clip = |i: usize| format!("/media/clip{i:02}.mp4");

    // A feed of 10 entries: 10 children, all downloaded.
    fx.show(10);
    let first = app.submit_download(json!({ "url": feed, "skip_archived": true, "playlist": {} })).await;
    let parent = app.wait_final(&first, LIMIT).await;
    assert_eq!(parent["status"], "completed", "{parent}");
    assert_eq!(parent["children"], json!({ "completed": 10 }), "{parent}");
    assert_eq!(
        parent["expansion"],
        json!({ "entry_count": 10, "children": 10, "truncated": false, "skipped_archived": 0 })
    );
    assert_eq!(children(&app, &first).await.len(), 10);

    // The feed gains two entries, listed first (newest first, as podcasts list).
    fx.show(12);
    let requests_before = fx.requests().len();
    let second = app.submit_download(json!({ "url": feed, "skip_archived": true, "playlist": {} })).await;
    let parent = app.wait_final(&second, LIMIT).await;
    assert_eq!(parent["status"], "completed", "{parent}");
    assert_eq!(parent["children"], json!({ "completed": 2 }), "{parent}");
    assert_eq!(
        parent["expansion"],
        json!({
            "entry_count": 12, "children": 2, "truncated": false, "skipped_archived": 10,
            "note": "10 entries skipped: already in the download archive"
        })
    );
    let mut kids = children(&app, &second).await;
    println!(
        "second download: expansion {}, children {}: {:?}",
        parent["expansion"],
        kids.len(),
        kids.iter()
            .map(|k| (k["playlist_index"].clone(), k["url"].clone(), k["status"].clone()))
            .collect::<Vec<_>>()
    );
    kids.sort_by_key(|k| k["playlist_index"].as_u64());
    let made: Vec<(Option<u64>, &str, &str)> = kids
        .iter()
        .map(|k| {
            (k["playlist_index"].as_u64(), k["url"].as_str().expect("url"), k["status"].as_str().expect("s"))
        })
        .collect();
    assert_eq!(
        made,
        [
            (Some(1), fx.url("media/clip12.mp4").as_str(), "completed"),
            (Some(2), &fx.url("media/clip11.mp4"), "completed")
        ]
    );
    // What the second download asked the server for: the feed, then the two new
    // entries only (each child's key lookup and download); no archived entry.
    let asked: Vec<String> = fx.requests()[requests_before..].to_vec();
    println!("fixture requests of the second download: {asked:?}");
    let media: Vec<&String> = asked.iter().filter(|p| p.ends_with(".mp4")).collect();
    assert!(media.iter().any(|p| **p == clip(11)) && media.iter().any(|p| **p == clip(12)), "{asked:?}");
    assert!(
        media.iter().all(|p| **p == clip(11) || **p == clip(12)),
        "an archived entry was fetched: {asked:?}"
    );

    // A third time, nothing is new: no child, and the collection completes (as
    // yt-dlp does on a fully archived playlist), its note saying why.
    let requests_before = fx.requests().len();
    let third = app.submit_download(json!({ "url": feed, "skip_archived": true, "playlist": {} })).await;
    let parent = app.wait_final(&third, LIMIT).await;
    assert_eq!(parent["status"], "completed", "{parent}");
    assert_eq!(
        parent["expansion"],
        json!({
            "entry_count": 12, "children": 0, "truncated": false, "skipped_archived": 12,
            "note": "12 entries skipped: already in the download archive"
        })
    );
    assert_eq!(children(&app, &third).await.len(), 0);
    assert_eq!(fx.requests()[requests_before..], ["/growing.xml"]);

    // The archive export, read back by the real yt-dlp through the same feed.
    let export = app.get("/api/archive/export").await.text().await.expect("export");
    let mut lines: Vec<&str> = export.lines().collect();
    lines.sort();
    let want: Vec<String> = (1..=12).map(|i| format!("generic clip{i:02}")).collect();
    assert_eq!(lines, want, "{export}");
    let dir = tempfile::tempdir().expect("tempdir");
    let ytdlp = |archive: &str, out: &str| {
        let (archive, out) = (dir.path().join(archive), dir.path().join(out));
        let before = fx.requests().len();
        let run = std::process::Command::new(&app.settings.tools.ytdlp)
            .args(["--ignore-config", "--no-cache-dir", "--no-progress", "--download-archive"])
            .arg(&archive)
            .arg("-P")
            .arg(&out)
            .args(["-o", "%(id)s.%(ext)s", "--", &feed])
            .output()
            .expect("yt-dlp runs");
        let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
        assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
        let files: Vec<String> = std::fs::read_dir(&out)
            .map(|d| d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let media: Vec<String> =
            fx.requests()[before..].iter().filter(|p| p.ends_with(".mp4")).cloned().collect();
        (stdout, files, media)
    };
    std::fs::write(dir.path().join("export.txt"), &export).expect("write export");
    let (stdout, files, media) = ytdlp("export.txt", "all");
    let recorded: Vec<&str> =
        stdout.lines().filter(|l| l.contains("has already been recorded in the archive")).collect();
    println!("yt-dlp --download-archive <export>: {recorded:#?}\nmedia requests: {media:?}");
    assert_eq!(recorded.len(), 12, "{stdout}");
    for i in 1..=12 {
        assert!(
            recorded.iter().any(|l| l.contains(&format!("clip{i:02}: Entry {i} has already"))),
            "{stdout}"
        );
    }
    assert_eq!(files, Vec::<String>::new(), "yt-dlp downloaded an archived entry");
    // yt-dlp's generic extractor names a feed entry only by asking for its URL (one
    // request each, headers read, no file); a download would ask a second time.
    let mut asked = media.clone();
    asked.sort();
    assert_eq!(asked, (1..=12).map(clip).collect::<Vec<_>>(), "one identifying request per entry");

    // The check above can fail: without clip05's line, yt-dlp downloads clip05.
    let without: String =
        export.lines().filter(|l| *l != "generic clip05").map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.path().join("without.txt"), without).expect("write");
    let (stdout, files, media) = ytdlp("without.txt", "one");
    assert_eq!(stdout.lines().filter(|l| l.contains("has already been recorded")).count(), 11, "{stdout}");
    assert_eq!(files, ["clip05.mp4"]);
    assert_eq!(media.iter().filter(|p| **p == clip(5)).count(), 2, "identify, then download: {media:?}");
    assert_eq!(
        std::fs::read(dir.path().join("one/clip05.mp4")).expect("file"),
        std::fs::read(clips().join("clip05.mp4")).expect("clip")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_of_10000_entries_with_a_limit_of_500_makes_500_children_and_says_it_was_cut() {
    let app = TestApp::spawn_with(crate::helpers::AppOptions {
        tweak: |s| s.limits.max_playlist_items = 500,
        ..Default::default()
    })
    .await;
    let fx = FeedServer::serve().await;

    let id = app.submit_download(json!({ "url": fx.url("big-feed.xml"), "playlist": {} })).await;
    let start = Instant::now();
    let parent = loop {
        let parent = app.task(&id).await;
        if !parent["expansion"].is_null()
            || matches!(parent["status"].as_str(), Some("completed" | "failed" | "cancelled"))
        {
            break parent;
        }
        assert!(start.elapsed() < LIMIT, "not expanded: {parent}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("expanded in {:.1} s: {}", start.elapsed().as_secs_f64(), parent["expansion"]);
    assert_eq!(
        parent["expansion"],
        json!({
            "entry_count": 10_000, "children": 500, "truncated": true, "skipped_archived": 0,
            "note": "cut at 500 of 10000 entries (limits.max_playlist_items)"
        }),
        "{parent}"
    );
    assert_eq!(parent["playlist_items"], "all");
    let kids = children_by(&app, &id, 100).await;
    let mut indexes: Vec<u64> = kids.iter().map(|k| k["playlist_index"].as_u64().expect("index")).collect();
    indexes.sort_unstable();
    assert_eq!(indexes, (1..=500).collect::<Vec<_>>());
    let mut urls: Vec<&str> = kids.iter().map(|k| k["url"].as_str().expect("url")).collect();
    urls.sort_unstable();
    urls.dedup();
    assert_eq!(urls.len(), 500);
    assert!(kids.iter().all(|k| k["parent_task_id"] == id.as_str()));
    // The parent counts its 500 children (renewed each second while it follows them).
    let counted = |p: &Value| -> u64 {
        p["children"].as_object().map_or(0, |c| c.values().filter_map(Value::as_u64).sum())
    };
    let start = Instant::now();
    while counted(&app.task(&id).await) != 500 {
        assert!(start.elapsed() < Duration::from_secs(30), "{}", app.task(&id).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing past the cut was ever asked for.
    assert!(
        fx.media_requests().iter().all(|p| p
            .strip_prefix("/big/")
            .and_then(|n| n.strip_suffix(".mp4"))
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| (1..=500).contains(&n))),
        "{:?}",
        fx.media_requests()
    );

    // The children need not all run: cancel the collection (and so every child).
    let res = app.client.delete(format!("{}/api/tasks/{id}", app.address)).send().await.expect("delete");
    assert_eq!(res.status(), 200);
    let kids = children_by(&app, &id, 100).await;
    assert_eq!(kids.len(), 500);
    assert!(kids.iter().all(|k| matches!(k["status"].as_str(), Some("cancelled" | "completed"))), "{kids:?}");
}
