"""Retry policy and task registration: pure functions, checked without a queue."""

from __future__ import annotations

import json
import random
from typing import Any

import corral
import pytest
from corral.registry import encode_payload, lookup, register, spec_for
from corral.retry import Retry, exponential


def test_exponential_backoff_doubles_up_to_the_cap() -> None:
    backoff = exponential(0.5, 3.0)
    assert [backoff(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff(10_000) == 3.0  # no overflow for absurd attempt numbers
    assert exponential(1, 100, factor=3)(3) == 9
    with pytest.raises(ValueError, match="base >= 0"):
        exponential(-1, 2)
    with pytest.raises(ValueError, match="factor >= 1"):
        exponential(1, 2, factor=0.5)


def test_full_jitter_stays_within_the_backoff_and_spreads() -> None:
    policy = Retry(5, backoff=exponential(1.0, 8.0))
    rng = random.Random(7)
    delays = [policy.delay(3, rng) for _ in range(200)]
    assert all(0.0 <= d <= 4.0 for d in delays)
    assert max(delays) - min(delays) > 2.0  # spread out, not a thundering herd
    exact = Retry(5, backoff=exponential(1.0, 8.0), jitter="none")
    assert [exact.delay(n) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 8.0]


def test_should_retry_respects_budget_and_retry_on() -> None:
    policy = Retry(3, retry_on=(ConnectionError, TimeoutError))
    assert policy.should_retry(ConnectionError(), 1)
    assert policy.should_retry(TimeoutError(), 2)
    assert not policy.should_retry(TimeoutError(), 3)  # the third start was the last
    assert not policy.should_retry(ValueError(), 1)
    assert not policy.should_retry(KeyboardInterrupt(), 1)  # never retry non-Exceptions
    assert policy.should_retry(ConnectionError(), 3, max_attempts=5)  # stored budget wins
    by_type = Retry(2, retry_on=OSError)
    assert by_type.should_retry(ConnectionError(), 1) and not by_type.should_retry(KeyError(), 1)
    predicate = Retry(4, retry_on=lambda exc: "retry" in str(exc))
    assert predicate.should_retry(RuntimeError("please retry"), 1)
    assert not predicate.should_retry(RuntimeError("fatal"), 1)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_attempts": 0}, ValueError, "max_attempts"),
        ({"max_attempts": 1.5}, ValueError, "max_attempts"),
        ({"jitter": "half"}, ValueError, "jitter"),
        ({"backoff": 3}, TypeError, "backoff must be callable"),
        ({"retry_on": "errors"}, TypeError, "retry_on"),
        ({"retry_on": (ValueError, "x")}, TypeError, "retry_on"),
    ],
)
def test_retry_rejects_bad_options(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Retry(**kwargs)


async def _module_level(x: int) -> int:
    return x


async def _other(x: int) -> int:
    return x


def test_registration_names_and_lookup() -> None:
    register(_module_level)
    spec = spec_for(_module_level)
    assert spec.name == f"{__name__}._module_level" and spec.retry is None
    assert lookup(spec.name) is spec
    assert lookup("never.registered") is None
    register(_module_level, name="policy.same")  # the same function may be named again
    assert spec_for(_module_level).name == "policy.same"
    with pytest.raises(ValueError, match="already registered to"):
        register(_other, name="policy.same")
    assert corral.task(name="policy.other", retry=Retry(2))(_other) is _other
    assert spec_for(_other).retry == Retry(2)


def test_registration_refuses_what_a_restart_could_not_find() -> None:
    with pytest.raises(TypeError, match="cannot register a lambda"):
        register(lambda: None, name="policy.lambda")

    async def nested() -> None:
        pass

    with pytest.raises(TypeError, match="not a module-level function"):
        corral.task(name="policy.nested")(nested)
    with pytest.raises(TypeError, match="not a module-level function"):
        register(Retry().should_retry, name="policy.bound")
    with pytest.raises(TypeError, match="not callable"):
        register(42, name="policy.int")  # type: ignore[type-var]
    with pytest.raises(ValueError, match="non-empty string"):
        register(_other, name="  ")
    with pytest.raises(ValueError, match="timeout must be"):
        register(_other, name="policy.bad_timeout", timeout=0)
    with pytest.raises(TypeError, match=r"must be a corral\.Retry"):
        register(_other, name="policy.bad_retry", retry=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a registered task"):
        spec_for({}.get)
    with pytest.raises(TypeError, match="not a registered task"):
        spec_for([].append)  # unhashable-safe lookup


def test_payload_is_plain_json_and_checked_deeply() -> None:
    register(_other, name="policy.payload")
    spec = spec_for(_other)
    text = encode_payload(spec, (1, "a", None, True, 2.5, [1, {"k": [None]}]), {"x": {"y": 1}})
    assert json.loads(text) == {
        "args": [1, "a", None, True, 2.5, [1, {"k": [None]}]],
        "kwargs": {"x": {"y": 1}},
    }
    with pytest.raises(TypeError, match=r"argument 0\[0\]\['k'\] is a set"):
        encode_payload(spec, ([{"k": {1}}],), {})
    with pytest.raises(TypeError, match="infinity"):
        encode_payload(spec, (), {"x": float("inf")})
