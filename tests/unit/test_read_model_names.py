"""The read models' names are declared once, in `schemas/`: a checkpoint name or a Redis key spelled again
in `api/`, `streams/` or `config/` is a second copy that can drift from the one the other side uses
(a worker raising one checkpoint while the service waits on another waits for nothing)."""

import ast
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from schemas import history, read_models

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("api", "streams", "config")
MARK = "\x00"
# Same spelling, another thing: a writer's name inside `own-writes:<writer>`, not the user document's key.
NOT_COPIES = {("api/common/own_writes.py", "user:")}


def _prefix(name_of: Callable[..., str]) -> str:
    """What a name function spells before its first argument: `property_key` -> `property:`."""
    arguments = [MARK] * len(inspect.signature(name_of).parameters)
    return name_of(*arguments).split(MARK)[0]


def _declared() -> tuple[frozenset[str], frozenset[str]]:
    """(names spelled whole, prefixes of names built from an id) as the schemas declare them."""
    exact = {
        value
        for name, value in vars(read_models).items()
        if isinstance(value, str) and name.isupper() and name.endswith(("_CHECKPOINT", "_KEY"))
    }
    functions = [
        f for f in vars(read_models).values() if inspect.isfunction(f) and f.__module__ == read_models.__name__
    ]
    functions += [history.postgres_checkpoint, history.redis_checkpoint, history.replayer_checkpoint]
    functions.append(history.redis_prefix)
    return frozenset(exact), frozenset(_prefix(f) for f in functions)


def _strings(source: str) -> Iterator[tuple[int, str]]:
    """Every string literal, f-strings' literal parts included."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def copies(path: str, source: str) -> list[str]:
    exact, prefixes = _declared()
    found = []
    for line, text in _strings(source):
        if (path, text) in NOT_COPIES:
            continue
        if text in exact or any(text.startswith(prefix) for prefix in prefixes):
            found.append(f"{path}:{line}: {text!r}")
    return found


def test_the_names_are_distinct_and_the_prefixes_are_real():
    checkpoints = [v for k, v in vars(read_models).items() if k.endswith("_CHECKPOINT")]
    assert len(checkpoints) == len(set(checkpoints))
    exact, prefixes = _declared()
    assert "properties-redis" in exact
    assert {"property:", "user:", "files:property:", "notifications:unread:", "idempotency:"} <= prefixes
    assert "properties-opensearch@" in prefixes
    assert all(prefix for prefix in prefixes)  # an empty prefix would match every string


@pytest.mark.parametrize(
    "source",
    [
        'KEY = f"property:{property_id}"',
        'CHECKPOINT = "users-redis"',
        'def name(alias):\n    return f"properties-opensearch@{alias}"',
        'await redis.scan_iter(match=f"idempotency:*:{user_id}:*")',
        'ReadModel(f"user-history-replayer:{ns}", topics)',
    ],
)
def test_a_copy_is_caught(source):
    assert copies("streams/somewhere.py", source)


def test_a_name_taken_from_the_schemas_is_not_a_copy():
    source = "from schemas.read_models import property_key\nraw = await redis.get(property_key(property_id))\n"
    assert copies("api/somewhere.py", source) == []


def test_no_service_or_worker_spells_a_read_model_name_again():
    found = []
    for folder in SCANNED:
        for file in sorted((ROOT / folder).rglob("*.py")):
            path = file.relative_to(ROOT).as_posix()
            found += copies(path, file.read_text())
    where = "declare them in schemas/read_models.py (or schemas/history.py) and import them"
    assert found == [], f"{where}:\n" + "\n".join(found)
