"""A recording's payloads as JSON lines, in recording order: what `harness export`
writes, for Bytewax's `TestingSource`, `FileSource` or any other tool.

Each event's payload as it was recorded (its keys in their order), one per line; a
line that was not JSON is kept as its text (newlines as spaces), so that line
numbers follow the recording. A slice (`--from/--until/--wiki`) keeps only the events
it admits, as a replay's slice does; lines that are not JSON have no time or wiki and
are left out of a slice.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson

from harness.recording.reader import Recording
from harness.recording.slice import Slice

__all__ = ["payload_lines"]


def payload_lines(recording: Path, slice_: Slice | None = None) -> Iterator[bytes]:
    """Every admitted event's payload line (with its newline), in recording order."""
    for env in Recording(recording).envelopes():
        if env.is_json:
            data = env.data
            if slice_ and not (isinstance(data, dict)
                               and slice_.admits(data.get("timestamp"), data.get("wiki"))):
                continue
            yield orjson.dumps(data) + b"\n"
        elif not slice_:
            yield (env.raw or "").replace("\n", " ").encode("utf-8", "replace") + b"\n"
