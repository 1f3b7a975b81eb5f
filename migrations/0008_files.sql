-- The files read model, written only by the `file-projection` worker (streams/files), and the
-- variants table written only by the `file-optimizer` worker.
-- A file's events all live on one partition of `files` (keyed by file id), so the offset of the last
-- event applied (`last_offset`) orders them: a write applies only when its offset is newer, and a
-- deleted file stays deleted (a deletion seen before its upload, in a partial replay, is a tombstone).
CREATE TABLE files (
    id              text        PRIMARY KEY,
    owner_id        text,
    property_id     text,
    kind            text,
    content_type    text,
    size_bytes      bigint,
    sha256          text,
    filename        text,
    variants        jsonb       NOT NULL DEFAULT '[]',
    optimized_at    timestamptz,
    uploaded_at     timestamptz,
    deleted         boolean     NOT NULL DEFAULT false,
    deleted_at      timestamptz,
    -- The owner's account was deleted: the row keeps no filename, and the file is gone.
    erased          boolean     NOT NULL DEFAULT false,
    last_offset     bigint      NOT NULL,
    last_event_id   text        NOT NULL,
    updated_at      timestamptz NOT NULL
);

-- A property's files in listing order (photos first); the garbage collector's "still referenced?".
CREATE INDEX files_property_idx ON files (property_id, kind, uploaded_at, id) WHERE NOT deleted;
CREATE INDEX files_owner_idx ON files (owner_id, uploaded_at DESC) WHERE NOT deleted;
CREATE INDEX files_sha256_idx ON files (sha256) WHERE NOT deleted;

-- Owners whose account was deleted: an upload of theirs projected later (a replay, or an event still in
-- flight at the deletion) is stored erased at once, so no order of events brings their data back.
CREATE TABLE file_erased_owners (
    user_id     text        PRIMARY KEY,
    erased_at   timestamptz NOT NULL
);

-- The version of each property's file list in Redis (`files:property:{id}`): raised under a row lock in
-- the transaction that changes the list, and read back with the list, so the Redis write of a newer
-- list always carries a higher version than any older one (a Lua guard refuses older versions).
CREATE TABLE file_property_lists (
    property_id text        PRIMARY KEY,
    version     bigint      NOT NULL
);

-- Optimisation jobs: one per (request, image); queued by `file.optimize_requested`, closed by
-- `file.optimized` or `file.optimization_failed`.
CREATE TABLE file_optimization_jobs (
    job_id          text        PRIMARY KEY,
    file_id         text        NOT NULL,
    source_sha256   text,
    requested_by    text,
    status          text        NOT NULL,
    error           text,
    variants        jsonb       NOT NULL DEFAULT '[]',
    widths          integer[]   NOT NULL DEFAULT '{}',
    formats         text[]      NOT NULL DEFAULT '{}',
    requested_at    timestamptz,
    finished_at     timestamptz,
    last_offset     bigint      NOT NULL,
    updated_at      timestamptz NOT NULL
);

CREATE INDEX file_optimization_jobs_file_idx ON file_optimization_jobs (file_id);

-- The optimiser's own record of each variant it made, keyed by the source bytes: a restarted worker
-- makes only what is missing (each variant once), and identical uploads share their variants. Written
-- with ON CONFLICT DO NOTHING, so the first one made stays.
CREATE TABLE file_variants (
    source_sha256   text        NOT NULL,
    width           integer     NOT NULL,  -- the size class asked for (320, 768, 1600): the variant's name
    format          text        NOT NULL,
    pixel_width     integer     NOT NULL,  -- what it is: the class, or the original's width if narrower
    height          integer     NOT NULL,
    content_type    text        NOT NULL,
    sha256          text        NOT NULL,
    size_bytes      bigint      NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (source_sha256, width, format)
);

CREATE INDEX file_variants_sha256_idx ON file_variants (sha256);
