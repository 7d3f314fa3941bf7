-- Task records: the source of truth for every accepted task (Redis only carries
-- the job). Written in SQL that SQLite and PostgreSQL both accept.
-- Timestamps are Unix microseconds (UTC).
CREATE TABLE tasks (
    task_id          TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    status           TEXT NOT NULL,
    progress         DOUBLE PRECISION NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    completed_at     BIGINT,
    updated_at       BIGINT NOT NULL,
    request          TEXT NOT NULL,
    downloaded_files TEXT NOT NULL DEFAULT '[]',
    output_file      TEXT,
    error            TEXT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    worker           TEXT
);

CREATE INDEX tasks_by_created ON tasks (created_at, task_id);
CREATE INDEX tasks_by_status ON tasks (status, created_at);
