"""corral.lint_rules: the linter that flags raw concurrency and names the governed replacement."""

from __future__ import annotations

__all__: list[str] = []
