-- Each user's personal-data key (crypto-shredding, schemas/personal.py). The user service creates the
-- key before it sends the registration; the user projection reads keys to open the sealed email, name,
-- phone and password hash of `users` events, and deletes the key in the transaction that erases the
-- account. Without its key, every copy of that person's data in Kafka and `event_store` is noise.
CREATE TABLE user_keys (
    user_id     text        PRIMARY KEY,
    key         bytea       NOT NULL CHECK (octet_length(key) = 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);
