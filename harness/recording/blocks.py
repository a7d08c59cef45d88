"""Blocks: what one flush of the writer puts in a segment file.

A block is a zstd *skippable frame* (the block header: seq range, receive
time range, and where each lane's frame is) followed by one lane frame per
lane that had events. `zstdcat` still prints every line, because decoders
skip skippable frames. A killed writer leaves at most one block cut short,
at the end of the file; since a block is written with one `write` after all
earlier ones, what survives is always a prefix: no holes.

A lane frame is one independent zstd frame (`WSB1` headers), or, in a block
merged from several (`recording.compact`), several back to back, each
listed with its events and size in the header (`WSB2`): a reader far from
the file then fetches a lane's share of many flushes in one request, and
still decompresses it in pieces the size of a flush.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from harness.errors import RecordingError

__all__ = ["Block", "BlockHeader", "Damage", "LaneRef", "Part", "scan_blocks", "scan_file"]

PARTIAL: Final = ".partial"  # suffix of a segment still being written
_SKIPPABLE_MAGIC: Final = 0x184D2A5E
_FRAME_HEAD = struct.Struct("<II")  # magic, payload size
_BLOCK_HEAD = struct.Struct("<4sQQddH")  # tag, first/last seq, first/last recv, n frames
_LANE_REF = struct.Struct("<HII")  # lane, events, compressed size
_PART_COUNT = struct.Struct("<H")  # WSB2: per lane, how many zstd frames its frame holds
_PART = struct.Struct("<IId")  # WSB2: one of them: events, compressed size, first recv
_BLOCK_TAG: Final = b"WSB1"
_PARTS_TAG: Final = b"WSB2"


@dataclass(frozen=True, slots=True)
class Part:
    """One zstd frame of a lane frame: its events and size, and the receive time of
    the first event of the flush it came from (what pacing goes by)."""

    events: int
    size: int
    first_recv: float


@dataclass(frozen=True, slots=True)
class LaneRef:
    """Where one lane's frame sits in a block; `parts` lists its zstd frames in a
    merged block (then `events` and `size` are their sums)."""

    lane: int
    events: int
    size: int
    parts: tuple[Part, ...] = ()


@dataclass(frozen=True, slots=True)
class BlockHeader:
    """The skippable frame in front of a block's lane frames."""

    first_seq: int
    last_seq: int
    first_recv: float
    last_recv: float
    lanes: tuple[LaneRef, ...]

    @property
    def events(self) -> int:
        return sum(ref.events for ref in self.lanes)

    @property
    def data_size(self) -> int:
        return sum(ref.size for ref in self.lanes)

    def pieces(self, ref: LaneRef) -> tuple[Part, ...]:
        """The zstd frames of `ref`'s lane frame, in order."""
        return ref.parts or (Part(ref.events, ref.size, self.first_recv),)

    def encode(self) -> bytes:
        parted = any(r.parts for r in self.lanes)
        payload = _BLOCK_HEAD.pack(
            _PARTS_TAG if parted else _BLOCK_TAG, self.first_seq, self.last_seq,
            self.first_recv, self.last_recv, len(self.lanes),
        ) + b"".join(_LANE_REF.pack(r.lane, r.events, r.size) for r in self.lanes)
        if parted:
            for ref in self.lanes:
                pieces = self.pieces(ref)
                payload += _PART_COUNT.pack(len(pieces)) + b"".join(
                    _PART.pack(p.events, p.size, p.first_recv) for p in pieces)
        return _FRAME_HEAD.pack(_SKIPPABLE_MAGIC, len(payload)) + payload

    @classmethod
    def read(cls, f: BinaryIO) -> tuple[BlockHeader, int] | None:
        """Read a header at the file position: (header, its size), None at EOF.

        Raises `EOFError` if the header is cut short, `ValueError` if it is not one.
        """
        head = f.read(_FRAME_HEAD.size)
        if not head:
            return None
        if len(head) < _FRAME_HEAD.size:
            raise EOFError("block header cut short")
        magic, size = _FRAME_HEAD.unpack(head)
        if magic != _SKIPPABLE_MAGIC or size < _BLOCK_HEAD.size:
            raise ValueError("not a block header (bad magic or size)")
        payload = f.read(size)
        if len(payload) < size:
            raise EOFError("block header cut short")
        tag, first, last, first_recv, last_recv, n = _BLOCK_HEAD.unpack_from(payload)
        table = _BLOCK_HEAD.size + n * _LANE_REF.size
        if tag not in (_BLOCK_TAG, _PARTS_TAG) or size < table \
                or (tag == _BLOCK_TAG and size != table):
            raise ValueError("not a block header (bad tag or lane table)")
        refs = tuple(LaneRef(*ref)
                     for ref in _LANE_REF.iter_unpack(payload[_BLOCK_HEAD.size:table]))
        if tag == _PARTS_TAG:
            refs = _with_parts(refs, payload, table)
        if any(a.lane >= b.lane for a, b in itertools.pairwise(refs)):  # the writer's order
            raise ValueError("not a block header (lanes repeated or out of order)")
        return cls(first, last, first_recv, last_recv, refs), _FRAME_HEAD.size + size


def _with_parts(refs: tuple[LaneRef, ...], payload: bytes, at: int) -> tuple[LaneRef, ...]:
    """`refs` with the part tables of a `WSB2` header that follow them from byte `at`;
    `ValueError` unless each table fills its lane frame exactly and the tables fill
    the header."""
    out = []
    for ref in refs:
        if at + _PART_COUNT.size > len(payload):
            raise ValueError("not a block header (part table cut short)")
        (count,) = _PART_COUNT.unpack_from(payload, at)
        at += _PART_COUNT.size
        end = at + count * _PART.size
        if count == 0 or end > len(payload):
            raise ValueError("not a block header (part table cut short)")
        parts = tuple(Part(*part) for part in _PART.iter_unpack(payload[at:end]))
        at = end
        if sum(p.events for p in parts) != ref.events or sum(p.size for p in parts) != ref.size:
            raise ValueError(f"not a block header (lane {ref.lane}'s parts do not add up)")
        out.append(LaneRef(ref.lane, ref.events, ref.size, parts))
    if at != len(payload):
        raise ValueError("not a block header (bytes after the part tables)")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Block:
    """One block of a segment, located but not yet decompressed."""

    segment: str
    offset: int  # of the header in the segment file
    header: BlockHeader
    header_size: int

    @property
    def end(self) -> int:
        return self.offset + self.header_size + self.header.data_size

    def frame_offset(self, index: int) -> int:
        return self.offset + self.header_size + sum(r.size for r in self.header.lanes[:index])


@dataclass(frozen=True, slots=True)
class Damage:
    """A part of a recording that cannot be read.

    `lines` is how many event lines it held, when known (0 if unknown);
    `lane` is None when it concerns a whole block or segment.
    """

    where: str
    lines: int = 0
    lane: int | None = None
    cut: bool = False  # the file simply ends here (normal for an unfinished segment)


def scan_blocks(path: Path, start: int = 0, *, resync: bool = False
                ) -> Iterator[Block | Damage]:
    """Locate the blocks of a segment file from byte `start` on.

    Yields `Block`s. If the file ends inside a block, yields one cut
    `Damage` and stops. Bytes that are not a block raise `RecordingError`,
    or with `resync` are reported as `Damage` and skipped up to the next
    valid block header.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        yield from scan_file(f, size, path.name.removesuffix(PARTIAL), start, resync=resync)


def scan_file(f: BinaryIO, size: int, name: str, start: int = 0, *, resync: bool = False
              ) -> Iterator[Block | Damage]:
    """`scan_blocks` over an open segment of `size` bytes called `name` (one fetched
    from object storage, say)."""
    f.seek(start)
    offset = start
    while True:
        try:
            got = BlockHeader.read(f)
        except EOFError:
            yield Damage(f"{name}: last block cut short at byte {offset} (header)", cut=True)
            return
        except ValueError as exc:
            if not resync:
                raise RecordingError(f"{name}: byte {offset}: {exc}") from None
            found = _next_header(f, offset + 1, size)
            yield Damage(f"{name}: bytes {offset}..{found if found is not None else size}"
                         f" are not blocks ({exc}); skipped")
            if found is None:
                return
            offset = found
            f.seek(offset)
            continue
        if got is None:
            return
        header, header_size = got
        block = Block(name, offset, header, header_size)
        if block.end > size:
            yield Damage(f"{name}: last block cut short at byte {offset}"
                         f" ({size - offset} of {block.end - offset} bytes)",
                         header.events, cut=True)
            return
        yield block
        offset = block.end
        f.seek(offset)


def _next_header(f: BinaryIO, start: int, size: int) -> int | None:
    """The offset of the next parseable block header that fits in the file."""
    magic = _FRAME_HEAD.pack(_SKIPPABLE_MAGIC, 0)[:4]
    f.seek(start)
    data = f.read()
    at = data.find(magic)
    while at >= 0:
        f.seek(start + at)
        try:
            got = BlockHeader.read(f)
        except (EOFError, ValueError):
            got = None
        if got is not None and start + at + got[1] + got[0].data_size <= size:
            return start + at
        at = data.find(magic, at + 1)
    return None

