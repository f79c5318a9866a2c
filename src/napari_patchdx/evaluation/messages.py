"""Text for error and warning messages of the evaluation modules (lists of names)."""

from __future__ import annotations

from collections.abc import Sequence


def name_list(names: Sequence[str] | set[str], limit: int = 20) -> str:
    """Sorted names joined by commas for a message, the first ``limit`` only (then the total)."""
    items = sorted(names)
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")
