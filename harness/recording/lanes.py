"""Lanes: the key shards a recording is written in, and a run of one lane's lines.

Every event of one `user` goes to lane `crc32(user) % lanes`, so a lane is
an ordered stream that holds *all* of its users' events. Several Bytewax
workers can then replay lanes in parallel while each user's events stay in
one ordered stream, which is what makes per-user results independent of
the worker count. Events without a string `user` are spread by `seq`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Final

from harness.recording.blocks import Damage

__all__ = ["DEFAULT_LANES", "LANE_RULE", "MAX_LANES", "Chunk", "lane_for", "lane_index",
           "lane_name", "lane_of"]

DEFAULT_LANES: Final = 8
MAX_LANES: Final = 65535
LANE_RULE: Final = "crc32(utf8(user)) % lanes; events without a string user: seq % lanes"


def lane_of(user: str, lanes: int) -> int:
    """The lane of a user's events; stable across runs and machines."""
    return zlib.crc32(user.encode("utf-8", "surrogatepass")) % lanes


def lane_for(value: Any, seq: int, lanes: int) -> int:
    """The lane of an event: its user's, or spread by `seq` when it has no string user."""
    user = value.get("user") if isinstance(value, dict) else None
    return lane_of(user, lanes) if isinstance(user, str) else seq % lanes


def lane_name(lane: int) -> str:
    """The partition and key name of a lane in a flow."""
    return f"lane-{lane:05d}"


def lane_index(name: str) -> int:
    """The lane of a `lane_name` (also of a routing key `lane-00003~7`)."""
    return int(name.removeprefix("lane-").split("~", 1)[0])


@dataclass(frozen=True, slots=True)
class Chunk:
    """Newline-separated envelope lines of one lane, in stream order.

    `origin` says which recorded frames the lines came from, for errors. A
    line that is not an envelope is damage: an error naming the place, or
    with `strict` off, skipped and reported. `damage` carries damage the
    reader skipped instead of lines.
    """

    lane: int
    lines: bytes
    origin: tuple[tuple[str, int, int], ...] = ()  # (place, first line there, lines)
    strict: bool = True
    damage: Damage | None = None
    outside: int = 0  # events of segments skipped whole by a slice, not read
    tick: float | None = None  # live, idle: every event received before this is in

    @property
    def line_count(self) -> int:
        """How many lines the chunk holds (from where they came, when known)."""
        if self.origin:
            return sum(count for _, _, count in self.origin)
        return self.lines.count(b"\n") + (not self.lines.endswith(b"\n"))

    def place(self, line: int) -> str:
        """Where the chunk's `line` (1-based) is in the recording."""
        for where, first, count in self.origin:
            if line <= count:
                return f"{where} line {first + line - 1}"
            line -= count
        return f"lane {self.lane} line {line}"
