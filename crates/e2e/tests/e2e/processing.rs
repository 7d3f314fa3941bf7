//! Processing with ffmpeg: downloaded and uploaded inputs, checked with ffprobe.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Fixtures, TestApp, media, probe_full};

const LIMIT: Duration = Duration::from_secs(120);

async fn completed(app: &TestApp, id: &str) -> Value {
    let task = app.wait_final(id, LIMIT).await;
    assert_eq!(task["status"], "completed", "{task}");
    task
}

fn output_of(app: &TestApp, task: &Value) -> std::path::PathBuf {
    let rel = task["output_file"].as_str().expect("output_file");
    assert!(rel.starts_with(&format!("processed/{}/", task["task_id"].as_str().expect("id"))), "{rel}");
    app.storage_root().join(rel)
}

fn elapsed(task: &Value) -> f64 {
    let t = |k: &str| {
        time::OffsetDateTime::parse(
            task[k].as_str().expect("time"),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("rfc3339")
    };
    (t("completed_at") - t("started_at")).as_seconds_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downloaded_clip_is_trimmed_resized_reencoded_and_served() {
    let app = TestApp::spawn().await;
    let fx = Fixtures::serve().await;
    let input = app.download_fixture(&fx, "clip10.mp4").await;
    // The sketch's client sends trim values as strings.
    let id = app
        .submit_process(
            &input,
            json!({"trim": {"start": "2", "duration": "3"}, "resize": {"width": 320, "height": 180}, "quality": 30, "fps": 15}),
        )
        .await;
    let task = completed(&app, &id).await;
    assert_eq!(task["kind"], "process");
    assert_eq!(task["input_file"], input);
    assert_eq!(task["progress"].as_f64(), Some(100.0));
    let out = output_of(&app, &task);
    let p = probe_full(&out);
    assert!((p.duration - 3.0).abs() <= 0.2, "duration {}", p.duration);
    assert_eq!(p.video, Some((320, 180)));
    assert!((p.fps.expect("fps") - 15.0).abs() < 0.01, "{:?}", p.fps);
    assert!(p.has_audio);

    let res = app.get(&format!("/api/download-result/{id}")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.expect("body").as_ref(), std::fs::read(&out).expect("output").as_slice());
    // No temporary file is left beside the result.
    let names: Vec<_> = std::fs::read_dir(out.parent().expect("dir")).expect("dir").collect();
    assert_eq!(names.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn width_alone_keeps_the_aspect_ratio_and_audio_only_drops_the_video() {
    let app = TestApp::spawn().await;
    let fx = Fixtures::serve().await;
    let input = app.download_fixture(&fx, "clip10.mp4").await;
    let (a, b, c) = tokio::join!(
        app.submit_process(&input, json!({"resize": {"width": 320}})),
        app.submit_process(&input, json!({"audio_only": true})),
        app.submit_process(&input, json!({"format": "mp3", "trim": {"start": 1, "duration": 2}})),
    );
    let resized = probe_full(&output_of(&app, &completed(&app, &a).await));
    assert_eq!(resized.video, Some((320, 180)));
    for id in [b, c] {
        let task = completed(&app, &id).await;
        let p = probe_full(&output_of(&app, &task));
        assert!(p.video.is_none() && p.has_audio, "{task}: {p:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_trim_reencodes_nothing_and_beats_reencoding() {
    let app = TestApp::spawn().await;
    let fx = Fixtures::serve().await;
    let input = app.download_fixture(&fx, "long.mp4").await;
    let source = probe_full(&app.storage_root().join(&input));

    let copy = app.submit_process(&input, json!({"trim": {"start": 5, "duration": 50}, "copy": true})).await;
    let copy = completed(&app, &copy).await;
    let reencode = app.submit_process(&input, json!({"trim": {"start": 5, "duration": 50}})).await;
    let reencode = completed(&app, &reencode).await;

    let copied = probe_full(&output_of(&app, &copy));
    // Same codec and the same encoder profile as the input (x264 ultrafast
    // writes Constrained Baseline; our re-encode writes High).
    assert_eq!(copied.video_codec, source.video_codec);
    assert_eq!(copied.video_profile, source.video_profile);
    assert_eq!(copied.video, source.video);
    assert!(copied.duration >= 49.5, "{}", copied.duration);
    let reencoded = probe_full(&output_of(&app, &reencode));
    assert_ne!(reencoded.video_profile, source.video_profile, "the re-encode should differ");
    let (tc, tr) = (elapsed(&copy), elapsed(&reencode));
    assert!(tc * 2.0 < tr, "copy took {tc:.2}s, re-encode {tr:.2}s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_of_a_long_job_rises_through_intermediate_values() {
    let app = TestApp::spawn().await;
    let fx = Fixtures::serve().await;
    let input = app.download_fixture(&fx, "long.mp4").await;
    let id =
        app.submit_process(&input, json!({"resize": {"width": 1280, "height": 720}, "quality": 18})).await;
    let mut seen: Vec<f64> = Vec::new();
    let started = Instant::now();
    loop {
        let t = app.task(&id).await;
        let p = t["progress"].as_f64().expect("progress");
        if t["status"] == "processing" && p > 0.0 && p < 100.0 && seen.last() != Some(&p) {
            seen.push(p);
        }
        if t["status"] != "pending" && t["status"] != "processing" {
            assert_eq!(t["status"], "completed", "{t}");
            break;
        }
        assert!(started.elapsed() < LIMIT, "{t}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.len() >= 3, "intermediate progress values seen: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "progress went backwards: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_processing_requests_are_refused_and_create_nothing() {
    let app = TestApp::spawn().await;
    let fx = Fixtures::serve().await;
    let input = app.download_fixture(&fx, "clip10.mp4").await;
    let root = app.storage_root().to_path_buf();
    let before = app.task_count().await;

    // Another task's private file, and a playlist posing as a video that points at it.
    let secret_dir = root.join("downloads/other-task");
    std::fs::create_dir_all(&secret_dir).expect("dir");
    let secret = secret_dir.join("private.ts");
    let status = std::process::Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=25",
            "-t",
            "2",
        ])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-f", "mpegts"])
        .arg(&secret)
        .status()
        .expect("ffmpeg");
    assert!(status.success());
    std::fs::create_dir_all(root.join("uploads/evil")).expect("dir");
    let playlist = format!(
        "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2,\nfile://{}\n#EXTINF:2,\n../../downloads/other-task/private.ts\n#EXT-X-ENDLIST\n",
        secret.display()
    );
    std::fs::write(root.join("uploads/evil/x.mp4"), playlist).expect("playlist");
    std::fs::write(root.join("uploads/evil/notes.txt"), "just text").expect("text");
    std::os::unix::fs::symlink("/etc/passwd", root.join("uploads/evil/link.mp4")).expect("symlink");
    let outside = tempfile::NamedTempFile::new().expect("outside file");
    std::fs::copy(media().dir.join("small.mp4"), outside.path()).expect("copy");

    let ok_ops = json!({"quality": 30});
    let cases: Vec<(&str, Value, &str)> = vec![
        (&input, json!({"quality": 99}), "operations.quality"),
        (&input, json!({"fps": 0}), "operations.fps"),
        (&input, json!({"resize": {"width": 100000}}), "operations.resize.width"),
        (&input, json!({"trim": {"start": -1, "duration": 2}}), "operations.trim.start"),
        (&input, json!({"trim": {"start": "00:00:30", "duration": 2}}), "operations.trim.start"),
        (&input, json!({"trim": {"start": 1, "duration": 0}}), "operations.trim.duration"),
        ("/etc/passwd", ok_ops.clone(), "input_file"),
        ("../../x", ok_ops.clone(), "input_file"),
        (outside.path().to_str().expect("utf8"), ok_ops.clone(), "input_file"),
        ("uploads/evil/link.mp4", ok_ops.clone(), "input_file"),
        ("uploads/evil/notes.txt", ok_ops.clone(), "input_file"),
        ("uploads/evil/x.mp4", ok_ops.clone(), "input_file"),
    ];
    for (file, ops, field) in cases {
        let res = app.process(file, ops.clone()).await;
        assert_eq!(res.status(), 400, "{file} {ops}");
        let body: Value = res.json().await.expect("json");
        let msg = body["error"].as_str().expect("message");
        assert!(msg.starts_with(&format!("{field}:")), "{file} {ops}: {msg}");
    }
    assert_eq!(app.task_count().await, before);
    assert!(!root.join("processed").exists(), "something was processed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_with_process_completes_both_tasks_linked() {
    let app = TestApp::spawn().await;
    let fx = Fixtures::serve().await;
    let id = app
        .submit_download(json!({
            "url": fx.url("clip10.mp4"),
            "process": {"operations": {"trim": {"start": 1, "duration": 2}, "resize": {"height": 90}}}
        }))
        .await;
    let download = completed(&app, &id).await;
    let next = download["next_task_id"].as_str().expect("next_task_id").to_owned();
    let process = completed(&app, &next).await;
    assert_eq!(process["parent_task_id"], id);
    assert_eq!(process["input_file"], download["downloaded_files"][0]);
    let p = probe_full(&output_of(&app, &process));
    assert_eq!(p.video, Some((160, 90)));
    assert!((p.duration - 2.0).abs() <= 0.2, "{}", p.duration);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_probed_and_can_be_processed() {
    let app = TestApp::spawn().await;
    let bytes = std::fs::read(media().dir.join("small.mp4")).expect("clip");
    let res = app
        .client
        .post(format!("{}/api/uploads?filename=My%20Clip.mp4", app.address))
        .header("content-type", "application/octet-stream")
        .body(bytes.clone())
        .send()
        .await
        .expect("upload");
    assert_eq!(res.status(), 201);
    let up: Value = res.json().await.expect("json");
    let input = up["input_file"].as_str().expect("input_file");
    assert!(input.starts_with("uploads/") && input.ends_with("/My_Clip.mp4"), "{up}");
    assert_eq!(up["size_bytes"].as_u64(), Some(bytes.len() as u64));
    assert_eq!(up["duration"].as_f64(), Some(4.0));
    assert_eq!(std::fs::read(app.storage_root().join(input)).expect("stored"), bytes);

    let id = app.submit_process(input, json!({"resize": {"width": 160}})).await;
    let task = completed(&app, &id).await;
    assert_eq!(probe_full(&output_of(&app, &task)).video, Some((160, 90)));

    // Not media: refused, and nothing is kept.
    let res =
        app.client.post(format!("{}/api/uploads", app.address)).body("hello").send().await.expect("upload");
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["code"], "not_media");
    let uploads: Vec<_> = std::fs::read_dir(app.storage_root().join("uploads")).expect("dir").collect();
    assert_eq!(uploads.len(), 1);
}
