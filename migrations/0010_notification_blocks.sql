-- Senders a user blocked (streams/notifications, api/notification): written only by the
-- `notification-projection` worker from `notification.sender_blocked.v1` / `..._unblocked.v1`, keyed by
-- the user who blocks, so one user's changes arrive in order. `blocked` is absolute and `version` is the
-- offset of the event that set it: a write applies only when newer. The notification service refuses a
-- blocked sender's message (403); the delivery reactor does not deliver one still queued.
CREATE TABLE notification_blocks (
    user_id      text        NOT NULL,
    sender_id    text        NOT NULL,
    blocked      boolean     NOT NULL,
    version      bigint      NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (user_id, sender_id)
);
-- Erasing a closed account also forgets the blocks others set against it.
CREATE INDEX notification_blocks_sender_idx ON notification_blocks (sender_id);
