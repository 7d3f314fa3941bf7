-- Subscriptions (crates/mediapro-core/src/store/subscription.rs): a collection
-- re-checked on a schedule. SQL that SQLite and PostgreSQL both accept. Times
-- are Unix microseconds (UTC).
--
-- `request` is the validated collection download each check submits (a
-- `playlist` task). `current_task_id` is the check in flight (its `playlist`
-- task): set with `next_check_at = now + every` in one compare-and-set when a
-- check starts, cleared when its listing is recorded or it failed, so at most
-- one check of a subscription lists at a time and a schedule missed during
-- downtime runs once.
CREATE TABLE subscriptions (
    subscription_id      TEXT PRIMARY KEY,
    url                  TEXT NOT NULL,
    every_minutes        BIGINT NOT NULL,
    request              TEXT NOT NULL,
    status               TEXT NOT NULL,
    paused_reason        TEXT,
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    next_check_at        BIGINT NOT NULL,
    last_check_at        BIGINT,
    current_task_id      TEXT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);
CREATE INDEX subscriptions_due ON subscriptions (status, next_check_at);
CREATE INDEX subscriptions_by_time ON subscriptions (created_at, subscription_id);

-- One row per check: what it found, queued and skipped, or why it failed.
CREATE TABLE subscription_checks (
    check_id        TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    task_id         TEXT NOT NULL,
    status          TEXT NOT NULL,
    started_at      BIGINT NOT NULL,
    finished_at     BIGINT,
    found           BIGINT,
    queued          BIGINT,
    skipped         BIGINT,
    error           TEXT
);
CREATE INDEX subscription_checks_by_subscription ON subscription_checks (subscription_id, started_at, check_id);

-- The entries a subscription's checks created a child for, by entry URL, with
-- the latest such child and how many checks queued it: a later check skips an
-- entry whose child has not failed (still pending, running, done or skipped),
-- so one new entry gets one child even while an earlier check's children are
-- downloading, and an entry whose download keeps failing is given up after a
-- few checks (subscription::MAX_ENTRY_CHECKS).
CREATE TABLE subscription_entries (
    subscription_id TEXT NOT NULL,
    entry_url       TEXT NOT NULL,
    task_id         TEXT NOT NULL,
    seen_at         BIGINT NOT NULL,
    queued_times    BIGINT NOT NULL DEFAULT 1,
    PRIMARY KEY (subscription_id, entry_url)
);
