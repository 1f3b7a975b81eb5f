import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import Settings
from tests.support.private_stack import PrivateStack


@pytest.fixture(autouse=True, scope="session")
def _real_stack(stack):
    """Every test here runs against the real stack."""
    return stack


@pytest.fixture(scope="session")
def own_stack(settings: Settings) -> Iterator[PrivateStack]:
    """A Kafka, Redis and OpenSearch of this run's own (and a database of its own on the shared Postgres),
    for tests that kill or restart a server: the shared ones are everybody's."""
    # Not under pytest's temporary root: another session of pytest on this machine prunes old ones.
    own = PrivateStack(Path(tempfile.mkdtemp(prefix="hi-own-stack-")), settings.postgres_dsn)
    try:
        own.start()
        yield own
    finally:
        own.stop()
        shutil.rmtree(own.state_dir, ignore_errors=True)
