"""A slice of a recording: events in an event-time range and/or of some wikis.

`harness replay --from T --until T --wiki NAME` replays only part of a
recording. An event is in the slice iff its integer `timestamp` is in
`[start, end)` (when either is given) and its `wiki` is one of `wikis`
(when given); an event without an integer timestamp cannot be placed in a
time range and is outside it. Events outside are counted, not reported.
Whole segments whose manifest time range lies outside are not even read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.errors import UsageError
from harness.recording.manifest import Segment

__all__ = ["Slice"]


@dataclass(frozen=True)
class Slice:
    start: int | None = None
    end: int | None = None
    wikis: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise UsageError(f"--from {self.start} must be before --until {self.end}")

    @property
    def timed(self) -> bool:
        return self.start is not None or self.end is not None

    def __bool__(self) -> bool:
        return self.timed or self.wikis is not None

    def admits(self, timestamp: Any, wiki: Any) -> bool:
        if self.timed and (type(timestamp) is not int
                           or (self.start is not None and timestamp < self.start)
                           or (self.end is not None and timestamp >= self.end)):
            return False
        return self.wikis is None or wiki in self.wikis

    def excludes_segment(self, segment: Segment) -> bool:
        """Whether every event of a segment lies outside the time range.

        Only for segments whose events all carry an integer timestamp in the
        manifest's range; events without one are outside a time range anyway.
        """
        if not self.timed or segment.min_timestamp is None or segment.max_timestamp is None:
            return False
        return ((self.end is not None and segment.min_timestamp >= self.end)
                or (self.start is not None and segment.max_timestamp < self.start))
