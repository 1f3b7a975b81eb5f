-- Search read models (streams/searches). Saved searches and history are written only by the
-- `search-projection` worker; saved-search matches only by the `saved-search-matcher` worker.

-- One row per saved search. `search.saved` / `search.saved_deleted` carry no sequence: a saved search's
-- events live on one partition of `searches` (keyed by its id), so the record's offset is the version,
-- and a write applies only when newer. A deletion keeps a tombstone (deleted, version) so a replayed
-- save cannot resurrect it; an erased owner's rows keep no name and no criteria.
CREATE TABLE saved_searches (
    id              text        PRIMARY KEY,
    owner_id        text        NOT NULL,
    name            text,
    criteria        jsonb,
    deleted         boolean     NOT NULL DEFAULT false,
    version         bigint      NOT NULL,
    last_event_id   text        NOT NULL,
    created_at      timestamptz,
    updated_at      timestamptz NOT NULL
);

-- "my saved searches", newest first, keyset paging; and the per-user cap.
CREATE INDEX saved_searches_owner_idx ON saved_searches (owner_id, created_at DESC, id DESC) WHERE NOT deleted;

-- Searches signed-in users ran (`search.performed`), one row per event: a redelivery is the same row.
CREATE TABLE search_history (
    event_id        text        PRIMARY KEY,
    user_id         text        NOT NULL,
    query           text,
    filters         jsonb       NOT NULL DEFAULT '{}',
    result_count    integer     NOT NULL,
    searched_at     timestamptz NOT NULL
);

CREATE INDEX search_history_user_idx ON search_history (user_id, searched_at DESC, event_id DESC);

-- Users whose account was deleted (`user.deleted`): their saved searches and history are erased, and a
-- replay of their older events (the topics keep them) is ignored. Ids only, nothing personal.
CREATE TABLE search_erased_users (
    user_id         text        PRIMARY KEY,
    erased_at       timestamptz NOT NULL
);

-- Each (saved search, listing) pair the matcher has alerted on: at most one `search.saved_match` each,
-- also when the listing is updated or the event is redelivered.
CREATE TABLE saved_search_matches (
    saved_search_id text        NOT NULL,
    property_id     text        NOT NULL,
    event_id        text        NOT NULL,
    property_version integer    NOT NULL,
    matched_at      timestamptz NOT NULL,
    PRIMARY KEY (saved_search_id, property_id)
);
