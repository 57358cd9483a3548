"""Report task failures to Sentry when the service has initialised ``sentry_sdk``.

Each report runs in a forked *isolation scope* so the ``corral.queue``/``corral.task``
tags never leak into the service's own scope, and it runs inside the task's copied
context, so the submitter's scope data (user, request tags, breadcrumbs) comes along.
``environment`` and ``release`` are whatever the service passed to ``sentry_sdk.init``;
the client stamps them on every event.

What is sent follows the service's ``send_default_pii`` option. Without it (sentry_sdk's
default) the event holds the exception, its stack trace, the tags and the ``corral``
context (queue, task, task id), but the local variables of corral's own frames are
dropped (they hold the task's arguments and, for durable tasks, the stored JSON payload)
and the ordering ``key`` is not sent. With ``send_default_pii=True`` corral adds
``repr(key)`` to the context and leaves every frame as sentry_sdk captured it. The task's
own frames are always sentry_sdk's business (``include_local_variables``, its
``EventScrubber`` denylist).

``sentry_sdk`` is never imported here: a service that initialised Sentry has imported it
already, and one that did not should not pay its import time (over 100 ms) for ``import corral``.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sentry_sdk._types import Event

__all__ = ["report_exception", "sentry_active"]


def sentry_active() -> bool:
    """True when ``sentry_sdk.init`` configured a client that sends events somewhere.

    ``sentry_sdk.init()`` without a DSN (common in development) yields an active client
    without a transport: events would go nowhere, so failures are logged instead.
    """
    sentry_sdk = sys.modules.get("sentry_sdk")
    if sentry_sdk is None:
        return False
    client = sentry_sdk.get_client()
    return bool(client.is_active()) and getattr(client, "transport", None) is not None


def report_exception(
    exc: BaseException, *, queue: str, task: str, task_id: str, key: Hashable | None
) -> None:
    """Capture ``exc`` with the corral tags in an isolation scope of its own."""
    import sentry_sdk  # already imported: only called when sentry_active()

    pii = bool(sentry_sdk.get_client().should_send_default_pii())
    with sentry_sdk.isolation_scope() as scope:
        scope.set_tag("corral.queue", queue)
        scope.set_tag("corral.task", task)
        context: dict[str, Any] = {"queue": queue, "task": task, "task_id": task_id}
        if pii:
            context["key"] = None if key is None else repr(key)
        else:
            scope.add_event_processor(_drop_corral_locals)
        scope.set_context("corral", context)
        sentry_sdk.capture_exception(exc)


def _drop_corral_locals(event: Event, hint: dict[str, Any]) -> Event:
    """Remove the captured locals of corral's frames: task arguments and payloads."""
    sections: list[Any] = [event.get("exception"), event.get("threads")]
    stacks = [
        value.get("stacktrace")
        for section in sections
        for value in (section or {}).get("values", ())
    ]
    for stack in stacks:
        for frame in (stack or {}).get("frames", ()):
            module = str(frame.get("module") or "")
            if module == "corral" or module.startswith("corral."):
                frame.pop("vars", None)
    return event
