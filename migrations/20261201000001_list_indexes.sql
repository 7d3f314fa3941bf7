-- Indexes for GET /api/tasks (crates/mediapro-core/src/store/list.rs): every filter
-- (kind, status, both, with or without a time window or cursor) walks one index in
-- (created_at, task_id) order and stops after a page, instead of scanning the table
-- when few or no rows match (a kind with no tasks scanned all of them).
-- Written in SQL that SQLite and PostgreSQL both accept.
CREATE INDEX tasks_by_kind ON tasks (kind, created_at, task_id);
CREATE INDEX tasks_by_status_created ON tasks (status, created_at, task_id);
CREATE INDEX tasks_by_kind_status ON tasks (kind, status, created_at, task_id);
-- A prefix of tasks_by_status_created: it serves every query this one did.
DROP INDEX tasks_by_status;
