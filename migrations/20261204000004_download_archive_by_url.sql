-- The download archive by URL (crates/mediapro-core/src/store/archive.rs,
-- `archived_by_url`): a collection entry whose flat listing names no id (a
-- feed's enclosure, which yt-dlp's generic extractor names only by fetching it)
-- is found by the URL its earlier download recorded, without a scan.
-- SQL that SQLite and PostgreSQL both accept.
CREATE INDEX download_archive_by_url ON download_archive (url);
