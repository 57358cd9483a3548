"""Redis credentials never reach an error message, a repr or ``corral tasks`` output,
whichever form redis-py accepts them in (userinfo, query parameters, any scheme)."""

from __future__ import annotations

import uuid

import pytest
from conftest_redis import RedisServer
from corral.store import RedisStore, StoreError
from corral.tasks_cli import main

pytestmark = pytest.mark.anyio

SECRET = "Pw5ecret"


def test_query_parameter_credentials_are_hidden_in_repr() -> None:
    for url in (
        f"redis://db.internal:6380/0?password={SECRET}",
        f"redis://db.internal:6380/0?db=1&username={SECRET}&password={SECRET}",
        f"redis://db.internal:6380/0?ssl_password={SECRET}",
        f"rediss://:{SECRET}@db.internal:6380/0",
        f"unix://:{SECRET}@/run/redis.sock?db=0",
        f"unix:///run/redis.sock?password={SECRET}",
        f"redis://:{SECRET[:3]}#{SECRET[3:]}@db.internal:6380/0",  # '#' in the password
        f"redis://:{SECRET[:3]}/{SECRET[3:]}@db.internal:6380/0",  # '/' in the password
    ):
        store = RedisStore(url, stream="s")
        assert SECRET not in repr(store) and SECRET[:3] not in store.where, url
        assert SECRET[3:] not in store.where, url


def test_harmless_parts_stay_readable() -> None:
    store = RedisStore(
        f"redis://ops:{SECRET}@db.internal:6380/2?db=3&password={SECRET}", stream="s"
    )
    assert store.where == "redis://ops:***@db.internal:6380/2?db=3&password=***"


@pytest.mark.parametrize(
    "url",
    [
        f"http://ops:{SECRET}@db.internal:6380/0",
        f"redis+sentinel://:{SECRET}@db.internal:26379/0",
        f"db.internal:6380?password={SECRET}",
        f"REDIS://:{SECRET}@db.internal:6380/0",
    ],
)
def test_wrong_scheme_message_hides_the_password(url: str) -> None:
    with pytest.raises(ValueError, match="url must look like") as caught:
        RedisStore(url, stream="s")
    assert SECRET not in str(caught.value)


def test_non_string_url_is_not_echoed() -> None:
    with pytest.raises(ValueError, match="<bytes>") as caught:
        RedisStore(f"redis://:{SECRET}@h:1/0".encode(), stream="s")  # type: ignore[arg-type]
    assert SECRET not in str(caught.value)


async def test_server_error_names_the_server_without_the_password(
    redis_server: RedisServer,
) -> None:
    # The server knows no user "ops": AUTH is refused, and the error says where.
    url = f"{redis_server.url}?username=ops&password={SECRET}"
    with pytest.raises(StoreError) as caught:
        async with RedisStore(url, stream=f"cred:{uuid.uuid4().hex[:8]}"):
            pass
    assert f"127.0.0.1:{redis_server.port}" in str(caught.value)
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)


def test_cli_output_hides_the_password(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    for url in (
        f"{redis_server.url}?username=ops&password={SECRET}",
        f"http://:{SECRET}@127.0.0.1:1/0",
    ):
        code = main(["--redis", url, "--stream", "cred:cli", "stats"])
        captured = capsys.readouterr()
        assert code == 2, captured
        assert SECRET not in captured.out + captured.err
        assert captured.err.startswith("corral tasks:")
