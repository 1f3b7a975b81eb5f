-- Dead letters that keep order per key. Once a consumer dead-letters an event, it parks the later
-- events of the same key here instead of applying them; the dead one is kept here too (dead = true),
-- so one table says, per consumer and key, what waits and behind what. `python -m ops.dead_letters`
-- lists them and asks for a redrive (redrive_requested_at); the consumer itself applies the rows in
-- `seq` order (the order it read them in) and deletes the ones it applied, so it stays the only writer
-- of its stores. The primary key is the source position: a batch parked twice (a redelivery after a
-- kill) parks each event once.
CREATE TABLE parked_events (
    seq bigserial NOT NULL,
    consumer text NOT NULL,
    key text NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL,
    "offset" bigint NOT NULL,
    record_key bytea,
    payload bytea,
    dead boolean NOT NULL,
    reason text NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now(),
    redrive_requested_at timestamptz,
    PRIMARY KEY (consumer, topic, partition, "offset")
);

CREATE INDEX parked_events_key_idx ON parked_events (consumer, key, seq);
CREATE INDEX parked_events_redrive_idx ON parked_events (consumer, seq) WHERE redrive_requested_at IS NOT NULL;
