//! The trust boundary against hostile pages, end to end: with only
//! 127.0.0.1/32 allowed, a server on 127.0.0.2 plays "the internal network".
//! Pages on 127.0.0.1 point at it every way yt-dlp follows (a `<source>`, a
//! `<track>`, a redirect, HLS segments); the internal server must see zero
//! requests, each task must fail with the blocked reason, and nothing is served.
//! Also: a chunked stream past the size cap, and a "video" that is HTML.

use std::{
    net::TcpListener,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use crate::helpers::{AppOptions, TestApp, media};

const LIMIT: Duration = Duration::from_secs(90);

/// A server that counts every connection's requests; it serves the fixture clips.
pub(crate) struct Counting {
    pub(crate) base: String,
    hits: Arc<AtomicUsize>,
    /// Bytes sent by `/chunked.mp4`.
    streamed: Arc<AtomicUsize>,
}

impl Counting {
    pub(crate) fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Serves the shared media folder plus `pages` (path → HTML or playlist body)
/// on `ip`, counting requests.
pub(crate) fn serve(ip: &str, pages: Vec<(String, String, &'static str)>) -> Counting {
    let dir = media().dir.clone();
    let listener = TcpListener::bind(format!("{ip}:0")).expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let hits = Arc::new(AtomicUsize::new(0));
    let streamed = Arc::new(AtomicUsize::new(0));
    let (counter, sent) = (hits.clone(), streamed.clone());
    let server = HttpServer::new(move || {
        let counter = counter.clone();
        let sent = sent.clone();
        let mut app = App::new()
            .wrap_fn(move |req, srv| {
                counter.fetch_add(1, Ordering::SeqCst);
                actix_web::dev::Service::call(srv, req)
            })
            .route(
                "/chunked.mp4",
                web::get().to(move || {
                    let sent = sent.clone();
                    // 32 MiB in 64 KiB chunks, no Content-Length, ~6 MB/s.
                    let chunks = futures::stream::unfold(0usize, move |n| {
                        let sent = sent.clone();
                        async move {
                            if n >= 512 {
                                return None;
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            sent.fetch_add(64 * 1024, Ordering::SeqCst);
                            Some((Ok::<_, std::io::Error>(web::Bytes::from(vec![0u8; 64 * 1024])), n + 1))
                        }
                    });
                    async move { HttpResponse::Ok().content_type("video/mp4").streaming(chunks) }
                }),
            );
        for (path, body, ctype) in pages.clone() {
            app = app.route(
                &path,
                web::get().to(move || {
                    let body = body.clone();
                    async move {
                        if let Some(target) = body.strip_prefix("REDIRECT ") {
                            return HttpResponse::Found()
                                .insert_header(("location", target.to_owned()))
                                .finish();
                        }
                        HttpResponse::Ok().content_type(ctype).body(body)
                    }
                }),
            );
        }
        app.service(actix_files::Files::new("/", dir.clone()))
    })
    .workers(1)
    .listen(listener)
    .expect("listen")
    .run();
    tokio::spawn(server);
    Counting { base, hits, streamed }
}

fn only_loopback_one(s: &mut mediapro_core::settings::Settings) {
    s.security.allow_private_networks = false;
    s.security.allowed_networks = vec!["127.0.0.1/32".into()];
    s.limits.max_file_size_bytes = 1024 * 1024;
    s.limits.max_attempts = 1;
}

/// An HLS playlist whose segments live on `segments_base`; the segments are
/// made from the small clip once per test process.
fn hls_playlist(segments_base: &str) -> String {
    let dir = media().dir.join(format!("hls-{}", std::process::id()));
    if !dir.join("index.m3u8").exists() {
        std::fs::create_dir_all(&dir).expect("hls dir");
        let status = std::process::Command::new("ffmpeg")
            .args(["-nostdin", "-loglevel", "error", "-y", "-i"])
            .arg(media().dir.join("small.mp4"))
            .args([
                "-c",
                "copy",
                "-f",
                "hls",
                "-hls_time",
                "1",
                "-hls_list_size",
                "0",
                "-hls_segment_filename",
            ])
            .arg(dir.join("seg%d.ts"))
            .arg(dir.join("index.m3u8"))
            .status()
            .expect("ffmpeg runs");
        assert!(status.success());
    }
    let playlist = std::fs::read_to_string(dir.join("index.m3u8")).expect("playlist");
    let folder = dir.file_name().and_then(|n| n.to_str()).expect("name").to_owned();
    playlist
        .lines()
        .map(|l| if l.ends_with(".ts") { format!("{segments_base}/{folder}/{l}") } else { l.to_owned() })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_pointing_at_an_internal_host_fail_blocked_and_it_sees_no_request() {
    let internal = serve("127.0.0.2", Vec::new());
    let i = internal.base.clone();
    let pages = vec![
        (
            "/source.html".into(),
            format!(
                r#"<html><body><video><source src="{i}/small.mp4" type="video/mp4"></video></body></html>"#
            ),
            "text/html",
        ),
        (
            "/track.html".into(),
            format!(
                r#"<html><body><video><source src="/small.mp4" type="video/mp4">
<track kind="subtitles" src="{i}/en.vtt" srclang="en" label="English"></video></body></html>"#
            ),
            "text/html",
        ),
        ("/redirect".into(), format!("REDIRECT {i}/small.mp4"), "text/plain"),
        ("/live.m3u8".into(), hls_playlist(&i), "application/vnd.apple.mpegurl"),
    ];
    let outside = serve("127.0.0.1", pages);
    let app = TestApp::spawn_with(AppOptions { tweak: only_loopback_one, ..AppOptions::default() }).await;

    // Submitting the internal host directly is refused before anything runs.
    let res = app.download(json!({ "url": format!("{i}/small.mp4") })).await;
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["code"], "private_address", "{body}");

    let mut ids = Vec::new();
    for (path, extra) in [
        ("source.html", json!({})),
        ("track.html", json!({"include_subtitles": true, "subtitle_langs": ["en"]})),
        ("redirect", json!({})),
        ("live.m3u8", json!({})),
    ] {
        let mut body = json!({ "url": format!("{}/{path}", outside.base) });
        body.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
        ids.push((path, app.submit_download(body).await));
    }
    for (path, id) in &ids {
        let task = app.wait_final(id, LIMIT).await;
        assert_eq!(task["status"], "failed", "{path}: {task}");
        let error = task["error"].as_str().unwrap_or_default();
        assert!(error.starts_with("blocked: 127.0.0.2"), "{path}: {error}");
        assert!(error.contains("is a loopback address"), "{path}: {error}");
        let res = app.get(&format!("/api/download-result/{id}")).await;
        assert_eq!(res.status(), 400, "{path}: nothing is served");
    }

    // Analyze of the redirecting URL: refused too.
    let res = app
        .client
        .post(format!("{}/api/analyze", app.address))
        .json(&json!({ "url": format!("{}/redirect", outside.base) }))
        .send()
        .await
        .expect("analyze");
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["code"], "egress_blocked", "{body}");
    assert!(body["error"].as_str().unwrap_or_default().starts_with("blocked: 127.0.0.2"), "{body}");

    assert_eq!(internal.hits(), 0, "the internal host saw no request");
    assert!(outside.hits() >= 4, "the pages were fetched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_stream_past_the_cap_is_killed_near_it_and_a_fake_video_is_not_media() {
    let pages = vec![(
        "/fake.mp4".into(),
        "<!DOCTYPE html><html><body>this is not a video</body></html>".to_owned(),
        "video/mp4",
    )];
    let outside = serve("127.0.0.1", pages);
    let app = TestApp::spawn_with(AppOptions { tweak: only_loopback_one, ..AppOptions::default() }).await;

    let big = app.submit_download(json!({ "url": format!("{}/chunked.mp4", outside.base) })).await;
    let fake = app.submit_download(json!({ "url": format!("{}/fake.mp4", outside.base) })).await;

    let task = app.wait_final(&big, LIMIT).await;
    assert_eq!(task["status"], "failed", "{task}");
    let error = task["error"].as_str().unwrap_or_default();
    assert!(error.contains("larger than the limit of 1048576 bytes"), "{error}");
    let sent = outside.streamed.load(Ordering::SeqCst);
    assert!(sent < 16 * 1024 * 1024, "killed near the 1 MiB cap, not after the whole stream: {sent} bytes");

    let task = app.wait_final(&fake, LIMIT).await;
    assert_eq!(task["status"], "failed", "{task}");
    assert!(task["error"].as_str().unwrap_or_default().starts_with("not a media file"), "{task}");
    assert!(!app.storage_root().join(format!("downloads/{fake}")).exists(), "partial files removed");
}
