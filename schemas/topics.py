"""The topic catalogue: every topic the system owns is declared here once, and described in topology.md.

Event topics are the system of record: keyed by aggregate id, kept forever. Changing a partition
count re-keys nothing already written, so it is a migration, not an edit: see topology.md.
"""

from dataclasses import dataclass, field
from enum import StrEnum

DEFAULT_PARTITIONS = 6
KEEP_FOREVER = -1
SEVEN_DAYS_MS = 7 * 24 * 60 * 60 * 1000


class TopicKind(StrEnum):
    EVENTS = "events"
    FACTS = "facts"
    COMMANDS = "commands"
    OUTCOMES = "outcomes"
    CHANGELOG = "changelog"
    DEAD_LETTERS = "dead-letters"


@dataclass(frozen=True)
class Topic:
    name: str
    kind: TopicKind
    key: str
    partitions: int = DEFAULT_PARTITIONS
    retention_ms: int = KEEP_FOREVER
    cleanup_policy: str = "delete"
    extra_config: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> dict[str, str]:
        return {
            "retention.ms": str(self.retention_ms),
            "cleanup.policy": self.cleanup_policy,
            **self.extra_config,
        }


USERS = Topic("users", TopicKind.EVENTS, key="user id (user-…)")
PROPERTIES = Topic("properties", TopicKind.EVENTS, key="property id (prop-…)")
SEARCHES = Topic("searches", TopicKind.EVENTS, key="saved search id (search-…) or user id for performed searches")
NOTIFICATIONS = Topic("notifications", TopicKind.EVENTS, key="notification id (notif-…)")
FILES = Topic("files", TopicKind.EVENTS, key="file id (file-…)")

# High-volume facts, produced directly by endpoints (nothing to decide); kept forever like events.
PROPERTY_VIEWS = Topic("property-views", TopicKind.FACTS, key="property id (prop-…)")

# Commands for the property decider, keyed like the events so the decider's table is co-partitioned.
# A command is only a request: once decided, its events are the record, so a week is plenty.
PROPERTY_COMMANDS = Topic(
    "property-commands", TopicKind.COMMANDS, key="property id (prop-…)", retention_ms=SEVEN_DAYS_MS
)

# Registrations, keyed by the email key (SHA-256 of the normalised email): one single writer per address,
# the `user-registry` decider, so two concurrent registrations of one email cannot both win.
USER_REGISTRATIONS = Topic(
    "user-registrations",
    TopicKind.COMMANDS,
    key="email key (email-<sha256 of the normalised email>)",
    retention_ms=SEVEN_DAYS_MS,
)

# Account commands for the `user-account` decider, keyed like `users` (co-partitioned with its table).
USER_COMMANDS = Topic("user-commands", TopicKind.COMMANDS, key="user id (user-…)", retention_ms=SEVEN_DAYS_MS)

# Rebuild requests for user history (`POST /api/user-history/replay`, `python -m ops.history_replay start`),
# run one at a time by the history replay worker. One partition: jobs are rare and run in request order.
USER_HISTORY_REPLAYS = Topic(
    "user-history-replays", TopicKind.COMMANDS, key="job id (job-…)", partitions=1, retention_ms=SEVEN_DAYS_MS
)

# Deciders' answers, read by the endpoints waiting on them; useless after the wait, kept a day.
COMMAND_OUTCOMES = Topic(
    "command-outcomes", TopicKind.OUTCOMES, key="command id", partitions=6, retention_ms=24 * 60 * 60 * 1000
)

# Faust table changelogs: `<app id>-<table>-changelog`, compacted (latest state per key is all a
# restore needs), partitioned exactly like the table's source topic.
PROPERTY_DECIDER_STATE_CHANGELOG = Topic(
    "property-decider-properties-state-changelog",
    TopicKind.CHANGELOG,
    key="property id (prop-…)",
    cleanup_policy="compact",
)

USER_REGISTRY_EMAILS_CHANGELOG = Topic(
    "user-registry-emails-changelog",
    TopicKind.CHANGELOG,
    key="email key (email-…)",
    cleanup_policy="compact",
)
USER_ACCOUNT_STATE_CHANGELOG = Topic(
    "user-account-accounts-changelog",
    TopicKind.CHANGELOG,
    key="user id (user-…)",
    cleanup_policy="compact",
)

# Poison messages from any consumer: the original bytes and key, with the error and source position in
# headers. Kept forever like the events they failed to be, so an operator can repair and replay them.
DEAD_LETTERS = Topic("dead-letters", TopicKind.DEAD_LETTERS, key="the original message's key", partitions=1)

# Everything archived in `event_store`: the record of what happened.
EVENT_TOPICS: tuple[Topic, ...] = (USERS, PROPERTIES, SEARCHES, NOTIFICATIONS, FILES, PROPERTY_VIEWS)
CHANGELOG_TOPICS: tuple[Topic, ...] = (
    PROPERTY_DECIDER_STATE_CHANGELOG,
    USER_REGISTRY_EMAILS_CHANGELOG,
    USER_ACCOUNT_STATE_CHANGELOG,
)
ALL_TOPICS: tuple[Topic, ...] = (
    *EVENT_TOPICS,
    PROPERTY_COMMANDS,
    USER_REGISTRATIONS,
    USER_COMMANDS,
    USER_HISTORY_REPLAYS,
    COMMAND_OUTCOMES,
    *CHANGELOG_TOPICS,
    DEAD_LETTERS,
)


def by_name(name: str) -> Topic:
    for topic in ALL_TOPICS:
        if topic.name == name:
            return topic
    raise KeyError(f"topic {name!r} is not in the catalogue")


# Headers written on every dead letter, read by operators and the replay tooling.
DLQ_ERROR_HEADER = "dlq.error"
DLQ_SOURCE_TOPIC_HEADER = "dlq.source.topic"
DLQ_SOURCE_PARTITION_HEADER = "dlq.source.partition"
DLQ_SOURCE_OFFSET_HEADER = "dlq.source.offset"
DLQ_CONSUMER_HEADER = "dlq.consumer"
# Not a topic: the Postgres NOTIFY channel on which `ops.dead_letters` asks a parking consumer (payload:
# its name) to redrive what it parked (streams/parking.py).
REDRIVE_CHANNEL = "parked_events_redrive"
