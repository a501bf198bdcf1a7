"""Small wording helpers shared by the scenario runner's modules."""

from __future__ import annotations


def plural(n: int, one: str, many: str | None = None) -> str:
    """``1 error``, ``2 errors``; ``many`` for irregular plurals (``access``/``accesses``)."""
    return f"{n} {one if n == 1 else (many if many is not None else one + 's')}"
