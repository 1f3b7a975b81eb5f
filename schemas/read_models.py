"""The read models' names: declared here once, used by the workers that write them and the services that read them.

- Checkpoints: `projection_checkpoints.projection`, one per store a projection writes. A query asks "has the
  store I read applied topic:partition:offset?" of the checkpoint of that store, so the name a worker
  raises and the name a service waits on must be one.
- Redis keys of the documents the projections keep and the services answer from.
- OpenSearch aliases the search projections write and the services search.

The user history's names (per namespace and generation) are in `schemas/history.py`, next to its
generations. tests/unit/test_read_model_names.py fails when a name declared here is spelled again
in `api/` or `streams/`.
"""

# ---- checkpoints ----

PROPERTIES_POSTGRES_CHECKPOINT = "properties-postgres"
PROPERTIES_REDIS_CHECKPOINT = "properties-redis"
# Of the default `properties` alias; another alias has its own (`properties_search_checkpoint`).
PROPERTIES_OPENSEARCH_CHECKPOINT = "properties-opensearch"
USERS_POSTGRES_CHECKPOINT = "users-postgres"
USERS_REDIS_CHECKPOINT = "users-redis"
FILES_POSTGRES_CHECKPOINT = "files-postgres"
FILES_REDIS_CHECKPOINT = "files-redis"
NOTIFICATIONS_POSTGRES_CHECKPOINT = "notifications-postgres"
NOTIFICATIONS_REDIS_CHECKPOINT = "notifications-redis"
SEARCHES_POSTGRES_CHECKPOINT = "searches-postgres"
SAVED_SEARCHES_OPENSEARCH_CHECKPOINT = "saved-searches-opensearch"
# The matcher's alerts of its default group; another group has `saved-search-matches@<group>`.
SAVED_SEARCH_MATCHES_CHECKPOINT = "saved-search-matches"
# The event store (`event_store`), named after the archiver's consumer group.
ARCHIVE_CHECKPOINT = "event-archive"

# ---- OpenSearch aliases (the defaults of HI_OPENSEARCH_*_ALIAS) ----

PROPERTIES_ALIAS = "properties"
SAVED_SEARCHES_ALIAS = "saved-searches"


def properties_search_checkpoint(alias: str) -> str:
    """ "Searchable in `alias`": one checkpoint per alias, so a projection into another alias (a test's, a
    benchmark's) never vouches for the default one."""
    if alias == PROPERTIES_ALIAS:
        return PROPERTIES_OPENSEARCH_CHECKPOINT
    return f"{PROPERTIES_OPENSEARCH_CHECKPOINT}@{alias}"


def saved_searches_checkpoint(alias: str) -> str:
    """Likewise for "registered in the saved-searches (percolator) alias"."""
    if alias == SAVED_SEARCHES_ALIAS:
        return SAVED_SEARCHES_OPENSEARCH_CHECKPOINT
    return f"{SAVED_SEARCHES_OPENSEARCH_CHECKPOINT}@{alias}"


def saved_search_matches_checkpoint(group: str, default_group: str) -> str:
    if group == default_group:
        return SAVED_SEARCH_MATCHES_CHECKPOINT
    return f"{SAVED_SEARCH_MATCHES_CHECKPOINT}@{group}"


# ---- Redis keys ----

# Ids of the newest and of the featured listings (sorted sets the property projection keeps).
RECENT_PROPERTIES_KEY = "properties:recent"
FEATURED_PROPERTIES_KEY = "properties:featured"


def property_key(property_id: str) -> str:
    """The listing document (`schemas.listings.listing_document`), or its tombstone once delisted."""
    return f"property:{property_id}"


def property_views_key(property_id: str) -> str:
    return f"property:{property_id}:views"


def user_key(user_id: str) -> str:
    return f"user:{user_id}"


def property_files_key(property_id: str) -> str:
    """The files attached to a listing."""
    return f"files:property:{property_id}"


def unread_notifications_key(user_id: str) -> str:
    return f"notifications:unread:{user_id}"


def idempotency_slot(scope: str, user_id: str, key_digest: str) -> str:
    """A command's remembered answer (api/common/idempotency.py), named by its user so that closing the
    account (the users projection) can sweep them: `idempotency_slots_of`."""
    return f"idempotency:{scope}:{user_id}:{key_digest}"


def idempotency_slots_of(user_id: str) -> str:
    """A SCAN pattern for every idempotency slot of a user."""
    return idempotency_slot("*", user_id, "*")
