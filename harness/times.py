"""ISO-8601 times as users and EventStreams write them, on every supported Python.

Python 3.10's `datetime.fromisoformat` reads only what `isoformat()` writes:
no `Z` suffix, fractions of exactly 3 or 6 digits. EventStreams' `meta.dt`
is `2023-11-14T22:13:20Z` or `...20.123Z`, and people type other forms.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

__all__ = ["parse_iso"]

_FRACTION = re.compile(r"(\.\d+)(?=[+-]\d\d:?\d\d$|$)")


def parse_iso(text: str) -> datetime:
    """An ISO-8601 date or time; UTC when no zone is given. Raises ValueError."""
    text = text.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    text = _FRACTION.sub(lambda m: (m.group(1) + "000000")[:7], text)
    when = datetime.fromisoformat(text)
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)
