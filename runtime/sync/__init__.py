"""corral.sync: the governed primitives for sync code (Django, Flask, scripts)."""

from __future__ import annotations

__all__: list[str] = []
