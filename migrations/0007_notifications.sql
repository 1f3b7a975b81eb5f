-- Notifications (streams/notifications, api/notification).
--
-- `notification_deliveries` is the delivery reactor's own durable schedule, not a read model: one row
-- per (dispatcher, notification, channel). The reactor's intake inserts rows (ON CONFLICT DO NOTHING:
-- a redelivered request never sends twice); its dispatcher claims due rows (FOR UPDATE SKIP LOCKED,
-- with a lease), sends, and records the outcome, which it then reports as an event (`report`).
-- `dispatcher` is the reactor's consumer group, so a test's group never takes a deployment's rows.
-- No email, phone or name is ever stored here: registered recipients are resolved at send time.
CREATE TABLE notification_deliveries (
    dispatcher        text        NOT NULL,
    notification_id   text        NOT NULL,
    channel           text        NOT NULL CHECK (channel IN ('email', 'sms', 'in_app')),
    user_id           text,
    kind              text        NOT NULL,
    state             text        NOT NULL DEFAULT 'pending'
                      CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'suppressed')),
    attempts          integer     NOT NULL DEFAULT 0,
    due_at            timestamptz NOT NULL,
    lease_until       timestamptz,
    deferred_until    timestamptz,
    last_error        text,
    permanent         boolean     NOT NULL DEFAULT false,
    provider_id       text,
    -- The event still to be produced for the latest outcome (deferred/suppressed/sent/failed), or NULL.
    report            text,
    -- The request exactly as it was consumed, dead-lettered untouched when the channel gives up.
    request_key       bytea,
    request           bytea       NOT NULL,
    source_topic      text        NOT NULL,
    source_partition  integer     NOT NULL,
    source_offset     bigint      NOT NULL,
    requested_at      timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dispatcher, notification_id, channel)
);
CREATE INDEX notification_deliveries_due_idx ON notification_deliveries (dispatcher, due_at) WHERE state = 'pending';
CREATE INDEX notification_deliveries_lease_idx ON notification_deliveries (dispatcher, lease_until)
    WHERE state = 'sending';
CREATE INDEX notification_deliveries_report_idx ON notification_deliveries (dispatcher) WHERE report IS NOT NULL;
CREATE INDEX notification_deliveries_user_idx ON notification_deliveries (user_id);

-- The read model, written only by the `notification-projection` worker.
-- One row per notification; the in-app inbox is the rows delivered in-app and not deleted.
-- A notification's events share a partition (keyed by its id), so they arrive in order; every column
-- below only ever moves one way (in_app false -> true, read_at/deleted_at NULL -> set), so a
-- redelivered event changes nothing.
CREATE TABLE notifications (
    id             text        PRIMARY KEY,
    user_id        text,                    -- the registered recipient; NULL for an outside address
    requested_by   text,                    -- the sender's user id; NULL for the system
    kind           text        NOT NULL,
    channel        text        NOT NULL,    -- as requested: email, sms, in_app or preferred
    title          text        NOT NULL,
    body           text        NOT NULL,
    data           jsonb       NOT NULL DEFAULT '{}',
    in_app         boolean     NOT NULL DEFAULT false,
    delivered_at   timestamptz,
    read_at        timestamptz,
    deleted_at     timestamptz,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX notifications_inbox_idx ON notifications (user_id, created_at DESC, id DESC)
    WHERE in_app AND deleted_at IS NULL;
CREATE INDEX notifications_unread_idx ON notifications (user_id) WHERE in_app AND deleted_at IS NULL AND read_at IS NULL;
CREATE INDEX notifications_requested_by_idx ON notifications (requested_by);

-- What became of each channel of a notification (the state endpoint). `event_offset` guards order:
-- a notification's events share one partition; a final state is never replaced by a passing one.
CREATE TABLE notification_channel_states (
    notification_id  text        NOT NULL,
    channel          text        NOT NULL,
    state            text        NOT NULL,  -- deferred, suppressed, sent, failed
    attempts         integer     NOT NULL DEFAULT 0,
    detail           text,                  -- why suppressed or failed
    until_at         timestamptz,           -- deferred until
    event_offset     bigint      NOT NULL,
    updated_at       timestamptz NOT NULL,
    PRIMARY KEY (notification_id, channel)
);

-- A user's preferences, absolute, at the offset of the event that set them (one user's changes share a
-- partition: keyed by user id). No row means the defaults.
CREATE TABLE notification_preferences (
    user_id       text        PRIMARY KEY,
    preferences   jsonb       NOT NULL,
    version       bigint      NOT NULL,
    updated_at    timestamptz NOT NULL
);

-- Unread counts, recomputed (absolute) under a per-user advisory lock; `version` only grows, and the
-- Redis copy `notifications:unread:{userId}` is written only when newer.
CREATE TABLE notification_unread_counts (
    user_id   text    PRIMARY KEY,
    unread    integer NOT NULL,
    version   bigint  NOT NULL
);

-- Users whose account was closed: their inbox and preferences were erased, and a late or replayed
-- event about them must not bring anything back.
CREATE TABLE notification_erased_users (
    user_id     text        PRIMARY KEY,
    erased_at   timestamptz NOT NULL
);
