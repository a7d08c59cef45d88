"""A segment's block index: every block's header and the sha256 of each of its lane
frames, kept in the manifest (`Segment.index`).

A reader that is far from the file (a recording in object storage) finds
where its lanes' frames are without reading the segment, fetches just those
byte ranges, and checks each against its sha256 as a local reader checks
the whole segment. The index is the block headers exactly as the segment
holds them (the same codec, `BlockHeader`), each followed by one 32-byte
digest per lane frame, base64-encoded: a line per segment, whatever the
number of blocks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO, Final

from harness.errors import RecordingError
from harness.recording.blocks import Block, BlockHeader, Damage, scan_file

__all__ = ["Frame", "IndexBuilder", "IndexedBlock", "index_of", "indexed_blocks"]

_DIGEST: Final = 32


@dataclass(frozen=True, slots=True)
class Frame:
    """One lane frame of a segment: its byte range and the sha256 it must have."""

    segment: str
    offset: int
    size: int
    digest: bytes
    lane: int

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass(frozen=True, slots=True)
class IndexedBlock:
    """A block located by the index, with the sha256 of each lane frame (header order)."""

    block: Block
    digests: tuple[bytes, ...]

    def frames(self) -> list[Frame]:
        """Its lane frames, in file order."""
        out, offset = [], self.block.offset + self.block.header_size
        for ref, digest in zip(self.block.header.lanes, self.digests, strict=True):
            out.append(Frame(self.block.segment, offset, ref.size, digest, ref.lane))
            offset += ref.size
        return out


class IndexBuilder:
    """The index of a segment being written, block by block."""

    def __init__(self) -> None:
        self._parts = bytearray()

    def add(self, header: bytes, frames: Sequence[bytes]) -> None:
        self._parts += header
        for frame in frames:
            self._parts += hashlib.sha256(frame).digest()

    def text(self) -> str:
        return base64.b64encode(self._parts).decode("ascii")


def indexed_blocks(text: str, segment: str) -> list[IndexedBlock]:
    """The blocks a segment's index lists, in file order; `RecordingError` if it is
    not an index."""
    try:
        raw = io.BytesIO(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        raise RecordingError(f"{segment}: the manifest's block index is not base64") from None
    out: list[IndexedBlock] = []
    offset = 0
    while True:
        try:
            got = BlockHeader.read(raw)
        except (EOFError, ValueError) as exc:
            raise RecordingError(f"{segment}: the manifest's block index is damaged"
                                 f" at block {len(out) + 1} ({exc})") from None
        if got is None:
            return out
        header, size = got
        digests = tuple(raw.read(_DIGEST) for _ in header.lanes)
        if any(len(d) != _DIGEST for d in digests):
            raise RecordingError(f"{segment}: the manifest's block index is cut short")
        block = Block(segment, offset, header, size)
        out.append(IndexedBlock(block, digests))
        offset = block.end


def index_of(f: BinaryIO, size: int, name: str) -> str:
    """The index of a finished segment, open as `f` (one a killed writer left, say)."""
    builder = IndexBuilder()
    for block in list(scan_file(f, size, name)):
        if isinstance(block, Damage):
            raise RecordingError(block.where)
        f.seek(block.offset)
        header = f.read(block.header_size)
        builder.add(header, [f.read(ref.size) for ref in block.header.lanes])
    return builder.text()
