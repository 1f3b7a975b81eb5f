-- User history (streams/history, api/user_history): the catalogue of its generations and rebuild jobs.
--
-- History itself lives in generations: one Postgres schema per generation, `user_history_<ns>_g<N>`
-- (activities, property_owners, erased_users), created by the history workers from
-- streams/history/generations.py, because a rebuild makes a fresh one and a layout change ships as a
-- rebuild, not as an ALTER of the live tables. A namespace (`HI_HISTORY_NAMESPACE`, `main` in a
-- deployment) has at most one live generation, named by `user_history_live`; swapping that row is the
-- atomic switch from the old generation to a rebuilt one.

CREATE TABLE user_history_generations (
    namespace       text        NOT NULL,
    generation      integer     NOT NULL,
    schema_name     text        NOT NULL UNIQUE,
    -- live: serves (or will serve, once swapped in) the namespace; snapshot: a read-only point-in-time
    -- copy (`until`); staging: one user's rebuilt history before it replaces theirs in the live one.
    kind            text        NOT NULL CHECK (kind IN ('live', 'snapshot', 'staging')),
    -- building -> live -> retired -> dropped; building -> ready (snapshots); building -> failed -> dropped.
    state           text        NOT NULL CHECK (state IN ('building', 'live', 'ready', 'retired', 'failed', 'dropped')),
    job_id          text,
    scope_user_id   text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    activated_at    timestamptz,
    dropped_at      timestamptz,
    PRIMARY KEY (namespace, generation)
);

CREATE INDEX user_history_generations_job_idx ON user_history_generations (job_id) WHERE job_id IS NOT NULL;

-- The live generation of each namespace. The live projection reads this row FOR SHARE in the
-- transaction of every batch it writes, a swap updates it: a batch lands wholly in the old generation
-- or wholly in the new one, never half in each.
CREATE TABLE user_history_live (
    namespace       text        PRIMARY KEY,
    generation      integer     NOT NULL,
    swapped_at      timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (namespace, generation) REFERENCES user_history_generations (namespace, generation)
);

-- Rebuild jobs (`POST /api/user-history/replay`), written only by the history replay worker, which
-- records each command here with its position (`projection_checkpoints` 'user-history-replayer') and
-- then the job's progress as it runs.
CREATE TABLE user_history_replay_jobs (
    job_id              text        PRIMARY KEY,
    namespace           text        NOT NULL,
    state               text        NOT NULL CHECK (state IN ('queued', 'running', 'completed', 'failed')),
    phase               text        NOT NULL,
    scope_user_id       text,
    from_time           timestamptz,          -- NULL: from the earliest offsets
    until_time          timestamptz,          -- set: a point-in-time snapshot, never swapped in
    requested_by        text        NOT NULL,
    requested_at        timestamptz NOT NULL,
    generation          integer,
    consumer_group      text,
    -- Per topic-partition offsets as JSON {"topic:partition": offset}: where the job starts, where its
    -- bulk load ends (the head when it started) and where it stops (snapshots only).
    start_offsets       jsonb,
    load_offsets        jsonb,
    stop_offsets        jsonb,
    events_total        bigint      NOT NULL DEFAULT 0,
    events_processed    bigint      NOT NULL DEFAULT 0,
    events_per_second   double precision,
    eta_seconds         double precision,
    started_at          timestamptz,
    finished_at         timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    error               text
);

CREATE INDEX user_history_replay_jobs_namespace_idx ON user_history_replay_jobs (namespace, requested_at DESC);
CREATE INDEX user_history_replay_jobs_open_idx ON user_history_replay_jobs (namespace, requested_at)
    WHERE state IN ('queued', 'running');
