"""Reading a recording: `Recording`, by lane for replay or in arrival order for tools.

A cut-short last block of an unfinished segment is what a killed writer
leaves: it is dropped and reported in `truncated`. Anywhere else, damage
raises `RecordingError` naming the segment, byte, lane and line, or, for a
recording opened with `skip_damaged`, comes back as `Damage` in place of
what could not be read, so that every loss can be counted and reported.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

import zstandard

from harness.errors import RecordingError
from harness.recording.blocks import PARTIAL, Block, Damage, LaneRef, scan_blocks, scan_file
from harness.recording.envelope import Envelope, EnvelopeError
from harness.recording.index import indexed_blocks
from harness.recording.manifest import Manifest, Segment
from harness.recording.remote import RemoteFiles
from harness.store.location import BucketPath, location

__all__ = ["MAX_FRAME_BYTES", "LanePosition", "Recording"]

# One lane frame, decompressed; a larger one is damage (HARNESS_MAX_FRAME_MB raises it).
MAX_FRAME_BYTES: Final = int(float(os.environ.get("HARNESS_MAX_FRAME_MB", "256")) * (1 << 20))


@dataclass(frozen=True, slots=True)
class LanePosition:
    """Where a lane reader continues: the next block to read and lines to skip in it."""

    segment: int = 0
    offset: int = 0
    skip: int = 0


class Recording:
    """Read access to a recording: a directory, or `s3://bucket/prefix`.

    `lane_frames` serves replay (one lane, decompressing only that lane's
    frames; in object storage, fetching only them); `blocks`/`envelopes`
    serve tools that need every line in arrival order. A cut-short last
    block of an unfinished segment is dropped and described in `truncated`;
    anywhere else it is an error.
    """

    def __init__(self, where: str | os.PathLike[str] | BucketPath, *,
                 skip_damaged: bool = False, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self.location = location(where)
        self.skip_damaged = skip_damaged
        self.max_frame_bytes = max_frame_bytes
        self.truncated: list[str] = []
        self.missing: set[int] = set()
        if isinstance(self.location, BucketPath):
            self.remote: RemoteFiles | None = RemoteFiles(self.location)
            self.manifest = self.remote.manifest()
            return
        self.remote = None
        self.manifest = Manifest.load(self.directory)
        for index, seg in enumerate(self.manifest.segments):
            path = self.segment_path(index)
            if not path.is_file():
                if skip_damaged:
                    self.missing.add(index)
                    continue
                raise RecordingError(f"{self.directory / seg.file}: segment listed in the"
                                     " manifest is missing")
            if path.resolve().parent != self.directory.resolve():
                raise RecordingError(f"{path}: segment resolves outside the recording")

    @property
    def lanes(self) -> int:
        return self.manifest.lanes

    @property
    def directory(self) -> Path:
        """The recording's directory (one in object storage has none: see `location`)."""
        if isinstance(self.location, BucketPath):
            raise RecordingError(f"{self.location}: in object storage, not a directory")
        return self.location

    @property
    def name(self) -> str:
        """The recording's name: its directory's, or the last part of its key prefix."""
        return self.location.name

    @property
    def identity(self) -> str:
        """The recording's place, the same wherever it is asked from."""
        return str(self.location) if self.remote is not None else str(self.directory.resolve())

    def __str__(self) -> str:
        return str(self.location)

    def segment_path(self, index: int) -> Path:
        seg = self.manifest.segments[index]
        final = self.directory / seg.file
        # A writer killed between renaming a segment and saving the manifest
        # leaves a finished file that the manifest still calls partial.
        return final if seg.complete or final.exists() else final.with_name(seg.file + PARTIAL)

    def segment_blocks(self, index: int, start: int = 0) -> Iterator[Block | Damage]:
        """The blocks of one segment.

        A cut-short tail of an unfinished segment is noted in `truncated`.
        Other damage raises `RecordingError`, or is yielded as `Damage` when
        the recording was opened with `skip_damaged`.
        """
        seg = self.manifest.segments[index]
        if index in self.missing:
            yield Damage(f"{seg.file}: missing", seg.events)
            return
        for item in self._scan(index, start):
            if isinstance(item, Block) and any(r.lane >= self.lanes for r in item.header.lanes):
                item = Damage(f"{seg.file}: block at byte {item.offset} names a lane beyond"
                              f" the recording's {self.lanes}", item.header.events)
            if isinstance(item, Damage):
                if item.cut and not seg.complete:
                    if item.where not in self.truncated:
                        self.truncated.append(item.where)
                    return
                if not self.skip_damaged:
                    raise RecordingError(item.where)
            yield item

    def open_segment(self, index: int) -> BinaryIO:
        """A segment's bytes to read (in object storage: fetched whole, checked against
        the manifest's sha256)."""
        if self.remote is not None:
            return io.BytesIO(self.remote.segment(self.manifest.segments[index]))
        return self.segment_path(index).open("rb")

    def _scan(self, index: int, start: int) -> Iterator[Block | Damage]:
        if self.remote is None:
            return scan_blocks(self.segment_path(index), start, resync=self.skip_damaged)
        seg = self.manifest.segments[index]
        if seg.index is not None:  # located by the index: nothing fetched until read
            return (entry.block for entry in indexed_blocks(seg.index, seg.file)
                    if entry.block.offset >= start)
        data = self.remote.segment(seg)
        return scan_file(io.BytesIO(data), len(data), seg.file, start, resync=self.skip_damaged)

    def blocks(self) -> Iterator[Block]:
        """Every readable block; with `skip_damaged`, damage is passed over silently."""
        for index in range(len(self.manifest.segments)):
            for item in self.segment_blocks(index):
                if isinstance(item, Block):
                    yield item

    def read_frames(self, block: Block, lanes: set[int] | None = None,
                    dctx: zstandard.ZstdDecompressor | None = None, f: BinaryIO | None = None
                    ) -> list[tuple[int, bytes | Damage]]:
        """Decompressed `(lane, lines)` of a block, for all or the given lanes.

        A frame that does not decompress raises, or with `skip_damaged` comes
        back as `Damage` in place of its lines.
        """
        return [(lane, data if isinstance(data, Damage) else b"".join(data))  # one: no copy
                for lane, data in self.read_pieces(block, lanes, dctx, f)]

    def read_pieces(self, block: Block, lanes: set[int] | None = None,
                    dctx: zstandard.ZstdDecompressor | None = None, f: BinaryIO | None = None
                    ) -> list[tuple[int, list[bytes] | Damage]]:
        """`read_frames`, each frame's lines in pieces, one per zstd frame it holds (what a
        merged block's header counts: see `blocks`)."""
        dctx = dctx or zstandard.ZstdDecompressor()
        if f is None and self.remote is not None:
            seg = next(s for s in self.manifest.segments if s.file == block.segment)
            f = io.BytesIO(self.remote.segment(seg))
        if f is None:
            path = self.directory / block.segment
            if not path.exists():
                path = path.with_name(path.name + PARTIAL)
            with path.open("rb") as opened:
                return self.read_pieces(block, lanes, dctx, opened)
        out: list[tuple[int, list[bytes] | Damage]] = []
        offset = block.offset + block.header_size
        for ref in block.header.lanes:
            if lanes is None or ref.lane in lanes:
                f.seek(offset)
                raw = f.read(ref.size)
                try:
                    out.append((ref.lane, self._pieces(raw, ref, dctx)))
                except (zstandard.ZstdError, _TooLarge) as exc:
                    where = (f"{block.segment}: byte {offset}: lane {ref.lane} frame does"
                             f" not decompress ({exc})")
                    if not self.skip_damaged:
                        raise RecordingError(where) from None
                    out.append((ref.lane, Damage(where, ref.events, ref.lane)))
            offset += ref.size
        return out

    def lane_frames(
        self, lane: int, start: LanePosition = LanePosition(),
        skip: Callable[[Segment], bool] | None = None, skipped: set[int] | None = None,
        damaged: Callable[[int], list[Damage]] | None = None,
    ) -> Iterator[tuple[int, Block | None, list[bytes] | Damage]]:
        """This lane's frames from block position `start`: (segment index, block, lines),
        the lines of a frame in pieces, one per zstd frame it holds (see `blocks`).

        With `skip_damaged`, damage comes as `(index, None or block, Damage)`:
        a lane's own unreadable frames to that lane, damage to whole blocks
        or segments to lane 0 only, so every loss is reported exactly once.
        Segments for which `skip` is true are not read; their indexes are
        added to `skipped`. `damaged(index)` is damage known from elsewhere
        (the recording lanes were derived from), which lane 0 reports as it
        enters the segment.
        """
        if self.remote is not None:  # before any frame is fetched: it may come with others
            self.remote.reads(lane)
        return self._lane_frames(lane, start, skip, skipped, damaged)

    def _lane_frames(
        self, lane: int, start: LanePosition, skip: Callable[[Segment], bool] | None,
        skipped: set[int] | None, damaged: Callable[[int], list[Damage]] | None,
    ) -> Iterator[tuple[int, Block | None, list[bytes] | Damage]]:
        dctx = zstandard.ZstdDecompressor()
        only = {lane}
        for index in range(start.segment, len(self.manifest.segments)):
            if skip is not None and skip(self.manifest.segments[index]):
                if skipped is not None:
                    skipped.add(index)
                continue
            offset = start.offset if index == start.segment else 0
            if damaged is not None and lane == 0 and offset == 0:
                for damage in damaged(index):
                    yield index, None, damage
            segment = self.manifest.segments[index]
            if self.remote is not None and segment.index is not None:
                yield from self._fetched_lane(index, segment, lane, offset, dctx)
                continue
            with contextlib.ExitStack() as stack:
                f = (None if index in self.missing
                     else stack.enter_context(self.open_segment(index)))
                for block in self.segment_blocks(index, offset):
                    if isinstance(block, Damage):
                        if lane == 0:
                            yield index, None, block
                    elif any(ref.lane == lane for ref in block.header.lanes):
                        ((_, data),) = self.read_pieces(block, only, dctx, f)
                        yield index, block, data

    def _fetched_lane(self, index: int, segment: Segment, lane: int, start: int,
                      dctx: zstandard.ZstdDecompressor
                      ) -> Iterator[tuple[int, Block | None, list[bytes] | Damage]]:
        """`lane_frames` of one segment in object storage: just this lane's frames, by
        ranged GETs through the block index, each checked against its sha256. Blocks and
        their damage come from `segment_blocks`, as on disk."""
        assert self.remote is not None and segment.index is not None
        frames = {entry.block.offset: entry.frames()
                  for entry in indexed_blocks(segment.index, segment.file)}
        items = list(self.segment_blocks(index, start))
        wanted = [(own, frames[item.offset]) for item in items if isinstance(item, Block)
                  for own in frames[item.offset] if own.lane == lane]
        fetched = self.remote.frames(wanted)
        owned = iter(wanted)
        for item in items:
            if isinstance(item, Damage):
                if lane == 0:
                    yield index, None, item
                continue
            ref = next((ref for ref in item.header.lanes if ref.lane == lane), None)
            if ref is None:
                continue
            (frame, _), data = next(owned), next(fetched)
            if isinstance(data, RecordingError):
                if not self.skip_damaged:
                    raise data
                yield index, item, Damage(str(data), ref.events, lane)
                continue
            try:
                yield index, item, self._pieces(data, ref, dctx)
            except (zstandard.ZstdError, _TooLarge) as exc:
                where = (f"{self.remote.url(segment.file)}: byte {frame.offset}: lane {lane}"
                         f" frame does not decompress ({exc})")
                if not self.skip_damaged:
                    raise RecordingError(where) from None
                yield index, item, Damage(where, ref.events, lane)

    def _pieces(self, raw: bytes, ref: LaneRef, dctx: zstandard.ZstdDecompressor
                ) -> list[bytes]:
        """A lane frame, decompressed zstd frame by zstd frame, never allocating more
        than `max_frame_bytes` for all of it."""
        if not ref.parts:
            return [self._decompress_one(raw, dctx)]
        view, at, out, total = memoryview(raw), 0, [], 0
        for part in ref.parts:
            piece = self._decompress_one(view[at:at + part.size], dctx)
            at += part.size
            total += len(piece)
            if total > self.max_frame_bytes:
                raise _TooLarge(f"over {self.max_frame_bytes:,} bytes decompressed")
            out.append(piece)
        return out

    def _decompress_one(self, raw: bytes | memoryview, dctx: zstandard.ZstdDecompressor
                        ) -> bytes:
        """One zstd frame, never allocating more than `max_frame_bytes` for it."""
        size = zstandard.frame_content_size(raw)
        if size > self.max_frame_bytes:
            raise _TooLarge(f"{size:,} bytes decompressed, over the limit of"
                            f" {self.max_frame_bytes:,}")
        if size < 0:  # not in the frame header: bounded output, an error if more
            return dctx.decompress(raw, max_output_size=self.max_frame_bytes)
        return dctx.decompress(raw)

    def block_envelopes(self, block: Block, dctx: zstandard.ZstdDecompressor | None = None
                        ) -> list[Envelope]:
        """A block's envelopes, parsed, in arrival (seq) order.

        A line that is not an envelope raises `RecordingError` naming the place,
        or is left out with `skip_damaged` (use `verify` to list such lines).
        """
        envelopes = []
        for lane, data in self.read_frames(block, None, dctx):
            if isinstance(data, Damage):
                continue
            for number, line in enumerate(data.splitlines(), start=1):
                try:
                    envelopes.append(Envelope.decode(line))
                except EnvelopeError as exc:
                    if not self.skip_damaged:
                        raise RecordingError(f"{block.segment}: block at byte {block.offset}:"
                                             f" lane {lane} line {number}: {exc}") from None
        envelopes.sort(key=_seq_of)
        return envelopes

    def segment_envelopes(self, index: int) -> Iterator[Envelope]:
        """One segment's envelopes in arrival (seq) order."""
        dctx = zstandard.ZstdDecompressor()
        for block in self.segment_blocks(index):
            if isinstance(block, Block):
                yield from self.block_envelopes(block, dctx)

    def envelopes(self) -> Iterator[Envelope]:
        """Every envelope, parsed, in arrival (seq) order."""
        for index in range(len(self.manifest.segments)):
            yield from self.segment_envelopes(index)

    def unaccounted(self, read: int, skipped: int) -> tuple[int, str] | None:
        """Events the manifest lists that a whole `skip_damaged` run neither read nor
        reported (damage no reader could place, e.g. a segment cut at a block
        boundary): how many, and where to say they went."""
        if not self.skip_damaged or not self.manifest.complete:
            return None
        missing = self.manifest.events - read - skipped
        if missing <= 0:
            return None
        return missing, (f"{self.location}: {missing} event(s) the manifest lists were"
                         " not found (segments cut short or damaged between blocks)")

    def first_received(self) -> float | None:
        for seg in self.manifest.segments:
            if seg.first_received is not None:
                return seg.first_received
        with contextlib.suppress(StopIteration, RecordingError):
            return next(self.blocks()).header.first_recv
        return None


class _TooLarge(Exception):
    pass


def _seq_of(envelope: Envelope) -> int:
    return envelope.seq
