"""The consumer group each part of `make run` names for its healthcheck (ops/run.py, docker-compose.yml) is
the group its worker really joins: a Faust worker's app id, or the replay worker's own group. A wrong name
would leave a container unhealthy forever, or healthy while another group does the work."""

import ast
import importlib
import importlib.util
from pathlib import Path

import faust

from config import get_settings
from ops.run import parts

# The one stream worker that is not a Faust app: an aiokafka consumer of its own group.
NOT_FAUST = {"streams.history.replay_worker": lambda: get_settings().history_replay_group}


def faust_app_of(module: str) -> faust.App:
    """The app a worker module runs, found without running it (a `*_worker` module starts it on import)."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, module
    origin = Path(spec.origin)
    if spec.submodule_search_locations:  # a package run with -m runs its __main__
        origin = origin.with_name("__main__.py")
    if module.endswith("_app"):
        return importlib.import_module(module).app
    for node in ast.walk(ast.parse(origin.read_text())):
        if isinstance(node, ast.ImportFrom) and any(alias.name == "app" for alias in node.names):
            assert node.module is not None
            return importlib.import_module(node.module).app
    raise AssertionError(f"{module} imports no Faust app")


def test_every_worker_part_probes_the_group_its_worker_joins():
    workers = [part for part in parts("127.0.0.1") if part.command[2].startswith("streams.")]
    assert len(workers) >= 15
    for part in workers:
        module = part.command[2]
        joined = NOT_FAUST[module]() if module in NOT_FAUST else faust_app_of(module).conf.id
        assert part.probe == ("group", joined), part.name
