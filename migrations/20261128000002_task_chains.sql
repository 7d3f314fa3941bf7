-- Pipelines: a download can be followed by a processing task.
ALTER TABLE tasks ADD COLUMN parent_task_id TEXT;
ALTER TABLE tasks ADD COLUMN next_task_id TEXT;
