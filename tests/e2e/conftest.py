import pytest


@pytest.fixture(autouse=True, scope="session")
def _real_stack(stack):
    """Every test here runs against the real stack."""
    return stack
