"""The topics history reads: every event topic with a user in it."""

from config import Settings
from schemas.topics import FILES, PROPERTIES, PROPERTY_VIEWS, SEARCHES, USERS

HISTORY_TOPICS = (USERS, PROPERTIES, PROPERTY_VIEWS, SEARCHES, FILES)


def history_topic_names(settings: Settings) -> list[str]:
    return settings.history_topic_override or [topic.name for topic in HISTORY_TOPICS]
