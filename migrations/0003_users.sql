-- The users read model, written only by the `user-projection` worker (streams/users). Every row carries
-- the event sequence (`version`) that produced it; a write applies only when its version is newer.
-- Personal columns are nullable: an erased account keeps its row (id, role, version, deleted_at) so a
-- stale redelivery cannot resurrect it, and nothing else. Property counts are not here: the property
-- projection keeps them (`user_property_counts`), and reads join them.
CREATE TABLE users (
    id                text        PRIMARY KEY,
    email_normalised  text        UNIQUE,
    password_hash     text,
    name              text,
    phone             text,
    role              text,
    deleted           boolean     NOT NULL DEFAULT false,
    deleted_at        timestamptz,
    version           integer     NOT NULL,
    last_event_id     text        NOT NULL,
    created_at        timestamptz,
    updated_at        timestamptz NOT NULL
);

-- Search: name prefix (everyone), email prefix (admins), newest first with keyset paging.
CREATE INDEX users_name_prefix_idx ON users (lower(name) text_pattern_ops) WHERE NOT deleted;
CREATE INDEX users_email_prefix_idx ON users (email_normalised text_pattern_ops) WHERE NOT deleted;
CREATE INDEX users_created_idx ON users (created_at DESC, id DESC) WHERE NOT deleted;
CREATE INDEX users_role_idx ON users (role, created_at DESC) WHERE NOT deleted;
