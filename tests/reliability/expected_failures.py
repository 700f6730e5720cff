"""Cases known to fail, each with the area whose fix is pending (none now: issue 15's areas A-D are merged).

One table: ``(command, kind prefix) -> (area, reason)``. A listed case that fails is counted
as *expected* and does not fail the tests; an unlisted case that fails does. Remove a row
once its area is merged (a listed case that passes is reported, so stale rows show).
"""

from __future__ import annotations

EXPECTED_FAILURES: dict[tuple[str, str], tuple[str, str]] = {}  # areas A-D are merged: nothing is expected to fail


def expected_failure(command: str, kind: str) -> tuple[str, str] | None:
    """``(area, reason)`` if ``command`` on ``kind`` is listed (longest matching kind prefix), else None."""
    matches = [(prefix, entry) for (listed, prefix), entry in EXPECTED_FAILURES.items()
               if listed in (command, "*") and kind.startswith(prefix)]
    return max(matches, key=lambda match: len(match[0]))[1] if matches else None
