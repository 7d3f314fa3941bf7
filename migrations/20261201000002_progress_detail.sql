-- Live progress beyond the percentage (phase, speed, ETA, bytes), as JSON
-- written with each lease renewal of the running attempt.
ALTER TABLE tasks ADD COLUMN progress_detail TEXT;
