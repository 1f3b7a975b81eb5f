"""The six services are built from the one table, each with the stores the design gives it, and
building them touches nothing: no settings read, no keys made, no connection opened."""

import importlib

import pytest

from api.services import SERVICES
from config.settings import get_settings

DESIGNED = {
    "user": (8081, {"kafka", "postgres", "redis"}),
    "property": (8082, {"kafka", "postgres", "redis", "opensearch"}),
    "search": (8083, {"kafka", "opensearch", "postgres", "redis"}),
    "user-history": (8084, {"kafka", "postgres", "redis"}),
    "notification": (8085, {"kafka", "postgres", "redis"}),
    "file": (8086, {"kafka", "postgres", "redis"}),
}


def test_the_table_matches_the_design():
    assert {spec.name: spec.port for spec in SERVICES} == {name: port for name, (port, _) in DESIGNED.items()}


@pytest.mark.parametrize("spec", SERVICES, ids=lambda spec: spec.name)
def test_each_service_builds_without_io_and_documents_itself(spec, monkeypatch, tmp_path):
    monkeypatch.setenv("HI_STATE_DIR", str(tmp_path / "state"))
    get_settings.cache_clear()
    try:
        module = importlib.reload(importlib.import_module(spec.module))
    finally:
        get_settings.cache_clear()
    app = module.app
    assert set(app.state.uses) == DESIGNED[spec.name][1]
    assert app.state.service_name == spec.name
    assert not (tmp_path / "state").exists()
    schema = app.openapi()
    assert spec.name in schema["info"]["title"] and len(schema["info"]["description"]) > 200
    assert {"/health", "/ready"} <= set(schema["paths"])
