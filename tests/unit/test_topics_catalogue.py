from schemas.topics import ALL_TOPICS, DEAD_LETTERS, EVENT_TOPICS, by_name


def test_event_topics_keep_data_forever_with_six_partitions():
    for topic in EVENT_TOPICS:
        assert topic.config["retention.ms"] == "-1", topic.name
        assert topic.config["cleanup.policy"] == "delete", topic.name
        assert topic.partitions == 6, topic.name


def test_every_name_is_declared_once():
    names = [t.name for t in ALL_TOPICS]
    assert len(names) == len(set(names))
    assert by_name("dead-letters") is DEAD_LETTERS
