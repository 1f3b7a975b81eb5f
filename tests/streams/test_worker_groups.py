"""The consumer group each part of `make run` names for its healthcheck (ops/run.py, docker-compose.yml) is
the group its worker really joins: a Faust worker's app id, a lean-runner projection's group
(streams/host.py), or the replay worker's own group. A wrong name
would leave a container unhealthy forever, or healthy while another group does the work."""

from config import get_settings
from ops.run import parts
from streams.host import projection_named
from tests.support.topology import faust_app_of, hosted_by

# The one stream worker that is not a Faust app: an aiokafka consumer of its own group.
NOT_FAUST = {"streams.history.replay_worker": lambda: get_settings().history_replay_group}


def test_every_worker_part_probes_the_group_its_worker_joins():
    workers = [part for part in parts("127.0.0.1") if part.command[2].startswith("streams.")]
    assert len(workers) >= 7
    for part in workers:
        module = part.command[2]
        if module == "streams.host":  # the projection host: every group it is given names
            joined = [projection_named(name, get_settings()).group for name in part.command[3:]]
        elif module in NOT_FAUST:
            joined = [NOT_FAUST[module]()]
        elif hosted := hosted_by(module):
            joined = [projection_named(name, get_settings()).group for name in hosted]
        else:
            joined = [faust_app_of(module).conf.id]
        assert part.probe == ("group", *joined), part.name
