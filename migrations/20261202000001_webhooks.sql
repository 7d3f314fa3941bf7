-- Signed webhooks (crates/mediapro-core/src/webhooks.rs): a durable outbox.
-- Written in SQL that SQLite and PostgreSQL both accept. Times are Unix
-- microseconds (UTC).
--
-- A submission may name a callback URL, kept with its task.
ALTER TABLE tasks ADD COLUMN callback_url TEXT;

-- One row per message: written in the same transaction as the task's final status
-- (store/outbox.rs), so a worker that dies before sending it does not lose it.
-- No secret is stored: `target` says which one signs it ('callback': the global
-- webhooks.signing_secret; 'endpoint': the configured endpoint with this url).
-- While an attempt runs, next_attempt_at is its lease: a row whose attempt never
-- reported back becomes due again when the lease ends.
CREATE TABLE webhook_deliveries (
    webhook_id      TEXT PRIMARY KEY,
    task_id         TEXT NOT NULL,
    event           TEXT NOT NULL,
    url             TEXT NOT NULL,
    target          TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    next_attempt_at BIGINT,
    finished_at     BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_by_task ON webhook_deliveries (task_id, created_at);

-- One row per attempt that reported back: an HTTP status, or the error (a
-- refused address, a timeout, a refused connection).
CREATE TABLE webhook_attempts (
    webhook_id  TEXT NOT NULL,
    attempt     BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    status_code BIGINT,
    error       TEXT,
    duration_ms BIGINT NOT NULL,
    PRIMARY KEY (webhook_id, attempt)
);
