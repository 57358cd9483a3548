"""Report task failures to Sentry when the service has initialised ``sentry_sdk``.

Each report runs in a forked *isolation scope* so the ``corral.queue``/``corral.task``
tags never leak into the service's own scope, and it runs inside the task's copied
context, so the submitter's scope data (user, request tags, breadcrumbs) comes along.
``environment`` and ``release`` are whatever the service passed to ``sentry_sdk.init``;
the client stamps them on every event.

``sentry_sdk`` is never imported here: a service that initialised Sentry has imported it
already, and one that did not should not pay its import time (over 100 ms) for ``import corral``.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable

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

    with sentry_sdk.isolation_scope() as scope:
        scope.set_tag("corral.queue", queue)
        scope.set_tag("corral.task", task)
        scope.set_context(
            "corral",
            {
                "queue": queue,
                "task": task,
                "task_id": task_id,
                "key": None if key is None else repr(key),
            },
        )
        sentry_sdk.capture_exception(exc)
