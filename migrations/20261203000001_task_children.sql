-- A collection's children (crates/mediapro-core/src/store/collection.rs, and
-- GET /api/tasks?parent_task_id=…): found by parent, in (created_at, task_id)
-- order, without scanning the table. SQL that SQLite and PostgreSQL both accept.
CREATE INDEX tasks_by_parent ON tasks (parent_task_id, created_at, task_id);
