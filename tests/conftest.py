from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

# Property tests assert properties, not speed: on a loaded 2-core CI machine generation and
# single examples can be slow, which says nothing about the code under test.
settings.register_profile(
    "corral", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("corral")

pytest_plugins = ["conftest_redis", "pytester"]  # redis-server fixtures; pytester for plugins


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every runtime test runs on both anyio backends."""
    return str(request.param)


@pytest.fixture
def default_sigint() -> Iterator[None]:
    """The SIGINT handler an interactive run has, for tests that press Ctrl-C: a shell starts
    background jobs with SIGINT ignored, and Python keeps that. Checks the test left it so."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
