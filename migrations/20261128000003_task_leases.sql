-- Fault tolerance: the queue job currently carrying each task (to find jobs
-- Redis lost), and a lease the running attempt renews (to tell a live attempt
-- from one whose worker died).
ALTER TABLE tasks ADD COLUMN job_id TEXT;
ALTER TABLE tasks ADD COLUMN heartbeat_at BIGINT;
CREATE INDEX tasks_by_updated ON tasks (status, updated_at);
