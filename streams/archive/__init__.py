"""The event archive: every event of every event topic, kept in Postgres `event_store`."""
