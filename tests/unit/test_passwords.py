"""Password rules and argon2id parameters."""

import pytest
from argon2 import extract_parameters

from api.user.passwords import HASHER, hash_password, password_problem, verify_password


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("short", "at least 10"),
        ("qwertyuiop", "common"),
        ("QWERTYUIOP", "common"),
        ("1234567890", "common"),
        ("aaaaaaaaaaaa", "simple"),
        ("x" * 129, "at most"),
    ],
)
def test_weak_passwords_are_refused_with_a_reason(password, why):
    assert why in (password_problem(password) or "")


def test_a_password_holding_the_email_is_refused():
    assert password_problem("priyareddy-2024!", email="priyareddy@example.in") is not None


def test_a_decent_password_passes():
    assert password_problem("Gachibowli-Villa-2024") is None


async def test_hashes_are_argon2id_with_owasp_parameters_and_verify():
    hashed = await hash_password("Gachibowli-Villa-2024")
    parameters = extract_parameters(hashed)
    assert hashed.startswith("$argon2id$")
    assert (parameters.memory_cost, parameters.time_cost, parameters.parallelism) == (19 * 1024, 2, 1)
    assert await verify_password(hashed, "Gachibowli-Villa-2024")
    assert not await verify_password(hashed, "Gachibowli-Villa-2025")
    assert not await verify_password(None, "Gachibowli-Villa-2024")  # unknown user: dummy hash, False
    assert HASHER.check_needs_rehash(hashed) is False
