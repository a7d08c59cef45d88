"""Lane-by-lane replay input: one Bytewax partition per recording lane.

Why lanes: per-user lateness depends on the order of that user's events.
A recording's lanes are key shards fixed when it was written (every event
of a user is in one lane, in arrival order), so whichever worker reads a
lane sees each of its users' events in recording order, and the detect step
is keyed by lane. The number of lanes is a property of the recording, not of
the cluster: 1, 2 or 4 workers, 1 or 2 processes all give the same windows.
Splitting by time (segments) instead would interleave a user's events across
workers and make lateness, and so the output, depend on thread timing.

The clock never enters: pacing (`speed`) only delays reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from harness.errors import logging_errors
from harness.process import keep_thread_state
from harness.recording.blocks import Block, Damage, Part
from harness.recording.lanes import Chunk, lane_index, lane_name
from harness.recording.manifest import Segment
from harness.recording.reader import LanePosition, Recording
from harness.recording.slice import Slice

__all__ = ["COALESCE_BYTES", "LanePartition", "LaneSource", "frame_place"]

COALESCE_BYTES = 512 << 10  # bigger chunks only cost cache misses in the decode copies


def frame_place(block: Block, lane: int) -> str:
    """Where lane `lane`'s frame of `block` is in the recording (for errors and damage)."""
    return f"{block.segment}: block at byte {block.offset}: lane {lane}"


@dataclass(slots=True)
class _Frame:
    """A lane frame being read: its lines in pieces (one per zstd frame it holds), and
    how far it has been passed on."""

    segment: int
    block: Block
    pieces: list[bytes]
    parts: tuple[Part, ...]
    place: str  # `frame_place`
    at: int = 0  # the next piece
    done: int = 0  # lines of the frame before that piece

    def position(self) -> LanePosition:
        """Where a reader continues once the pieces before `at` are passed on."""
        if self.at == len(self.pieces):
            return LanePosition(self.segment, self.block.end)
        return LanePosition(self.segment, self.block.offset, self.done)


@dataclass(frozen=True)
class LaneSource(FixedPartitionedSource[Chunk, LanePosition]):
    """Replays a recording directory lane by lane, as raw envelope lines (`Chunk`s).

    `speed`: None or 0 reads as fast as possible; X replays at X times the
    recorded pace (by receive time). `batch_size` caps the lines per
    emitted chunk (default: whole frames, small ones joined). A damaged
    recording raises `RecordingError`, also appended to `error_log` if given
    (see `logging_errors`).
    """

    path: Path
    speed: float | None = None
    batch_size: int | None = None
    error_log: Path | None = None
    skip_damaged: bool = False
    slice_: Slice | None = None
    slots: tuple[int, ...] | None = None  # slot (partition) -> the lane it reads; default: same

    def list_parts(self) -> list[str]:
        keep_thread_state()  # list_parts runs on every worker thread
        return [lane_name(lane) for lane in range(Recording(self.path).lanes)]

    def build_part(
        self, step_id: str, for_part: str, resume_state: LanePosition | None
    ) -> LanePartition:
        recording = Recording(self.path, skip_damaged=self.skip_damaged)
        slot = lane_index(for_part)
        lane = self.slots[slot] if self.slots is not None else slot
        return LanePartition(recording, lane, resume_state or LanePosition(),
                             self.speed, self.batch_size, self.error_log,
                             self.slice_.excludes_segment if self.slice_ else None)


class LanePartition(StatefulSourcePartition[Chunk, LanePosition]):
    """One lane of a recording as `Chunk`s, from `start`.

    `segment_events[i]` is what a skipped segment counts as outside (default:
    its manifest's count) and `damaged(i)` damage to report in segment `i`,
    for lanes derived from another recording (`harness.source.keylanes`).
    Consecutive frames are joined into chunks of about `coalesce` bytes.
    """

    def __init__(self, recording: Recording, lane: int, start: LanePosition,
                 speed: float | None, batch_size: int | None, error_log: Path | None,
                 skip_segment: Callable[[Segment], bool] | None = None, *,
                 segment_events: Sequence[int] | None = None,
                 damaged: Callable[[int], list[Damage]] | None = None,
                 coalesce: int = COALESCE_BYTES) -> None:
        self._lane = lane
        self._coalesce = coalesce
        self._logged_next_batch = logging_errors(self._next_batch, error_log)
        self.skipped_segments: set[int] = set()  # segments `skip_segment` left unread
        self._reported: set[int] = set()
        self._segment_events = (segment_events if segment_events is not None
                                else [s.events for s in recording.manifest.segments])
        self._frames = recording.lane_frames(lane, LanePosition(start.segment, start.offset),
                                             skip_segment, self.skipped_segments, damaged)
        self._position = start
        self._skip = start.skip
        self._lines: list[bytes] = []
        self._frame_where = ""
        self._current: _Frame | None = None  # a frame read in part
        self._pending: tuple[int, Block | None, Damage] | None = None  # damage held back
        self._strict = not recording.skip_damaged
        self._block_position = start
        self._after_piece = start
        self._batch_size = batch_size
        self._speed = speed or None
        # Pace from the recording's start, or from where a resumed lane picks up.
        self._origin = (recording.first_received() or 0.0) if start == LanePosition() else None
        self._started = time.time()
        self._due: float | None = None
        self._done = False

    def next_batch(self) -> list[Chunk]:
        return self._logged_next_batch()

    def _next_batch(self) -> list[Chunk]:
        try:
            chunks = self._read()
        except StopIteration:
            chunks = []
        outside = self._outside()
        if outside is not None:
            chunks.append(outside)
        elif not chunks and self._done:
            raise StopIteration
        return chunks

    def _outside(self) -> Chunk | None:
        """Lane 0 counts the events of segments left unread as outside the slice."""
        new = self.skipped_segments - self._reported
        if self._lane != 0 or not new:
            return None
        self._reported |= new
        return Chunk(self._lane, b"", outside=sum(self._segment_events[i] for i in new))

    def _next_frame(self) -> _Frame | tuple[int, Block | None, Damage] | None:
        """The frame read in part, else damage held back, else the next frame."""
        if self._current is not None:
            return self._current
        if self._pending is not None:
            pending, self._pending = self._pending, None
            return pending
        item = next(self._frames, None)
        self._done = item is None
        if item is None:
            return None
        segment, block, data = item
        if isinstance(data, Damage):
            return segment, block, data
        assert block is not None
        ref = next(ref for ref in block.header.lanes if ref.lane == self._lane)
        return _Frame(segment, block, data, block.header.pieces(ref),
                      frame_place(block, self._lane))

    def _damage(self, segment: int, block: Block | None, damage: Damage) -> list[Chunk]:
        # A damaged frame is passed like a read one; damage between blocks
        # leaves the position where it was, so a resume reports it again
        # (and the exactly-once sink has cut the first report away).
        if block is not None:
            self._position = LanePosition(segment, block.end)
        return [Chunk(self._lane, b"", strict=False, damage=damage)]

    def _whole_frames(self) -> list[Chunk]:
        """Consecutive frames joined into one chunk of up to about `COALESCE_BYTES`.

        A recorder flushes every second, so a live recording's frames hold a
        few events each; one Bytewax item per frame would cost more than
        the events themselves.
        """
        parts: list[bytes] = []
        origin: list[tuple[str, int, int]] = []
        size = 0
        while size < self._coalesce:
            frame = self._next_frame()
            if frame is None:
                break
            if not isinstance(frame, _Frame):
                if parts:
                    self._pending = frame
                    break
                return self._damage(*frame)
            first = frame.done + 1
            while frame.at < len(frame.pieces) and size < self._coalesce:
                piece = frame.pieces[frame.at]
                parts.append(piece)
                size += len(piece)
                frame.done += frame.parts[frame.at].events
                frame.at += 1
            origin.append((frame.place, first, frame.done - first + 1))
            self._position = frame.position()
            self._current = frame if frame.at < len(frame.pieces) else None
        if not parts:
            raise StopIteration
        return [Chunk(self._lane, b"".join(parts), tuple(origin), self._strict)]

    def _read(self) -> list[Chunk]:
        if not self._lines and not self._skip and self._batch_size is None and not self._speed:
            return self._whole_frames()
        if not self._lines:
            frame = self._next_frame()
            if frame is None:
                raise StopIteration
            if not isinstance(frame, _Frame):
                return self._damage(*frame)
            while frame.at < len(frame.parts) and frame.parts[frame.at].events <= self._skip:
                self._skip -= frame.parts[frame.at].events  # passed on before a resume
                frame.done += frame.parts[frame.at].events
                frame.at += 1
            if frame.at == len(frame.parts):
                self._current, self._position, self._skip = None, frame.position(), 0
                return []
            part, base = frame.parts[frame.at], frame.done + self._skip
            self._frame_where = frame.place
            self._lines = frame.pieces[frame.at].splitlines(keepends=True)[self._skip:]
            self._block_position = LanePosition(frame.segment, frame.block.offset, base)
            frame.done += part.events
            frame.at += 1
            self._after_piece = frame.position()
            self._current = frame if frame.at < len(frame.pieces) else None
            self._skip = 0
            if self._speed:
                if self._origin is None:
                    self._origin = part.first_recv
                self._due = self._started + (part.first_recv - self._origin) / self._speed
        if self._due is not None and time.time() < self._due:
            return []
        take = self._batch_size or len(self._lines)
        first_line = self._block_position.skip + 1
        lines, self._lines = self._lines[:take], self._lines[take:]
        if self._lines:
            done = self._block_position.skip + take
            self._block_position = LanePosition(self._block_position.segment,
                                                self._block_position.offset, done)
            self._position = self._block_position
        else:
            self._position = self._after_piece
        return [Chunk(self._lane, b"".join(lines), ((self._frame_where, first_line, len(lines)),),
                      self._strict)]

    def next_awake(self) -> datetime | None:
        if self._due is None or self._due <= time.time():
            return None
        return datetime.fromtimestamp(self._due, tz=timezone.utc)

    def snapshot(self) -> LanePosition:
        return self._position
