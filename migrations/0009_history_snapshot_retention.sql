-- Point-in-time copies of history are kept for `HI_HISTORY_SNAPSHOT_RETENTION_SECONDS` after their job
-- finished, then dropped by the replay worker; the job row stays, saying when its copy went.
ALTER TABLE user_history_replay_jobs ADD COLUMN snapshot_dropped_at timestamptz;

CREATE INDEX user_history_replay_jobs_snapshots_idx ON user_history_replay_jobs (namespace, finished_at)
    WHERE until_time IS NOT NULL AND state = 'completed' AND snapshot_dropped_at IS NULL;
