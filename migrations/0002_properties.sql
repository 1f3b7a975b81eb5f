-- The property read model, written only by the `property-projection` worker (streams/properties).
-- Every row carries the event sequence (`version`) that produced it; a write applies only when its
-- version is newer, so redelivered or replayed events change nothing.
-- Listing columns are nullable: a deletion seen before its creation (replay of a partial topic) leaves
-- a tombstone row holding the highest version, so the late creation can never resurrect it.
CREATE TABLE properties (
    id              text        PRIMARY KEY,
    owner_id        text,
    title           text,
    location        text,
    price           bigint,
    property_type   text,
    bedrooms        integer,
    bathrooms       integer,
    description     text,
    area_sqft       integer,
    amenities       text[]      NOT NULL DEFAULT '{}',
    latitude        double precision,
    longitude       double precision,
    attributes      jsonb       NOT NULL DEFAULT '{}',
    featured        boolean     NOT NULL DEFAULT false,
    images          jsonb       NOT NULL DEFAULT '[]',
    deleted         boolean     NOT NULL DEFAULT false,
    deleted_at      timestamptz,
    version         integer     NOT NULL,
    last_event_id   text        NOT NULL,
    created_at      timestamptz,
    updated_at      timestamptz NOT NULL
);

-- "my listings" and "listings of user X", newest first; live listings only are what the lists show.
CREATE INDEX properties_owner_created_idx ON properties (owner_id, created_at DESC) WHERE NOT deleted;
CREATE INDEX properties_location_idx ON properties (location) WHERE NOT deleted;
CREATE INDEX properties_type_idx ON properties (property_type) WHERE NOT deleted;
CREATE INDEX properties_price_idx ON properties (price) WHERE NOT deleted;
CREATE INDEX properties_created_idx ON properties (created_at DESC) WHERE NOT deleted;
CREATE INDEX properties_featured_idx ON properties (created_at DESC) WHERE featured AND NOT deleted;
CREATE INDEX properties_attributes_idx ON properties USING gin (attributes jsonb_path_ops);

-- Live listings per owner: an absolute count recomputed from `properties` in the same transaction as
-- the rows that changed it, never incremented, so a redelivered event cannot skew it.
CREATE TABLE user_property_counts (
    user_id         text        PRIMARY KEY,
    property_count  integer     NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Views are facts on `property-views` (no sequence). Exactly-once counting: the sink locks this
-- projection's checkpoint row for the view's partition, counts only views past it and raises it, all in
-- one transaction. A property's views all live on one partition (keyed by property id), so the
-- partition checkpoint is that property's view offset. Kept apart from `properties` because views may
-- arrive before (or without) the listing they name.
CREATE TABLE property_views (
    property_id     text        PRIMARY KEY,
    view_count      bigint      NOT NULL,
    last_offset     bigint      NOT NULL,
    last_viewed_at  timestamptz NOT NULL
);

-- Views per property per UTC day: "most viewed in the last 7 days" sums the last seven buckets.
CREATE TABLE property_views_daily (
    property_id     text        NOT NULL,
    day             date        NOT NULL,
    views           bigint      NOT NULL,
    PRIMARY KEY (property_id, day)
);

CREATE INDEX property_views_daily_day_idx ON property_views_daily (day, property_id) INCLUDE (views);
