-- Site profiles (crates/mediapro-core/src/site_profile.rs, store/site_profile.rs):
-- per-site settings a job or analyze picks by its URL's host. `config` is the
-- validated profile as JSON (domains, pacing, headers, ...); `cookies` is the
-- uploaded Netscape cookies file, read only to hand a job its private copy and
-- never answered by any route (`cookies_summary` is what GET shows). Health of
-- `check_url`: `healthy` (NULL = never checked, 0/1), `checked_at` and
-- `check_error`. Times are Unix microseconds (UTC).
CREATE TABLE site_profiles (
    name            TEXT NOT NULL PRIMARY KEY,
    config          TEXT NOT NULL,
    cookies         TEXT,
    cookies_summary TEXT,
    healthy         BIGINT,
    checked_at      BIGINT,
    check_error     TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
-- The profile a task's URL matched (its name; NULL when none), shown as
-- `site_profile` in the task's JSON.
ALTER TABLE tasks ADD COLUMN site_profile TEXT;
