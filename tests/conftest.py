from __future__ import annotations

import pytest

pytest_plugins = ["conftest_redis", "pytester"]  # redis-server fixtures; pytester for plugins


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every runtime test runs on both anyio backends."""
    return str(request.param)
