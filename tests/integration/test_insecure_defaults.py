"""A service and a worker started with HI_ENV=production and the development secrets refuse to start, and
say which settings to set (never their values)."""

import asyncio
import os
import sys

import pytest

from api.services import by_name
from config.settings import PROJECT_ROOT
from tests.support.services import free_port

SECRET_SETTINGS = ("HI_POSTGRES_PASSWORD", "HI_EMAIL_KEY_SECRET", "HI_SMS_API_KEY")


def production_with_defaults() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in SECRET_SETTINGS and key != "HI_ENV"}
    return {**env, "HI_ENV": "production"}


async def run(command: list[str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=PROJECT_ROOT,
        env=production_with_defaults(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), 90)
    except TimeoutError:
        process.kill()
        raise AssertionError("it started with the development secrets") from None
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(by_name("user").command(port=free_port()), id="user-service"),
        pytest.param([sys.executable, "-m", "streams.users.account_app", "worker", "-l", "info"], id="account-worker"),
    ],
)
async def test_production_with_default_secrets_exits_naming_them(command):
    status, output = await run(command)
    assert status != 0, output
    assert "HI_ENV=production refuses to start with development defaults" in output
    for name in SECRET_SETTINGS:
        assert name in output
    assert "hyderabad-local" not in output and "local-sms-key" not in output
