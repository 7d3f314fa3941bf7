-- The download archive (crates/mediapro-core/src/store/archive.rs): one row per
-- media item downloaded, keyed as yt-dlp's --download-archive keys it
-- (lower-case extractor key, media id). Not tied to tasks: retention, which
-- deletes tasks, leaves it alone. Times are Unix microseconds (UTC).
CREATE TABLE download_archive (
    extractor   TEXT NOT NULL,
    media_id    TEXT NOT NULL,
    task_id     TEXT,
    url         TEXT,
    archived_at BIGINT NOT NULL,
    PRIMARY KEY (extractor, media_id)
);
CREATE INDEX download_archive_by_time ON download_archive (archived_at, extractor, media_id);
