"""Every Faust table is co-partitioned with the topic its agent reads, as the topic catalogue states it
(schemas/topics.py): the table, its source topic and its changelog have one partition count, so a key's
state lives on the partition its messages arrive on, and a restore reads the changelog partition the
worker owns."""

from ops.run import parts
from schemas.topics import CHANGELOG_TOPICS, TopicKind, by_name
from tests.support.topology import faust_app_of, hosted_by


def faust_apps():
    modules = [part.command[2] for part in parts("127.0.0.1") if part.command[2].startswith("streams.")]
    # The replay worker and the lean runner's projections (streams/host.py) own no Faust table.
    lean = {"streams.history.replay_worker", "streams.host"}
    faust = [module for module in modules if module not in lean and not hosted_by(module)]
    return [faust_app_of(module) for module in faust]


def test_every_table_has_its_source_topics_partitions_and_a_catalogued_changelog():
    changelogs = []
    for app in faust_apps():
        sources = {topic for agent in app.agents.values() for topic in agent.channel.topics}
        for table in app.tables.values():
            assert len(sources) == 1, f"{app.conf.id}: a table beside agents of several topics {sources}"
            [source] = sources
            changelog = by_name(table.changelog_topic.get_topic_name())
            assert changelog.kind == TopicKind.CHANGELOG and changelog.cleanup_policy == "compact"
            assert table.partitions == by_name(source).partitions == changelog.partitions, table.name
            changelogs.append(changelog)
    assert sorted(topic.name for topic in changelogs) == sorted(topic.name for topic in CHANGELOG_TOPICS)
