"""Compaction: a finished segment rewritten with fewer, larger blocks.

A recorder writes a block per flush (a second's events, while recording),
which suits a reader of the file next to it. A reader far from the file (a
recording in object storage) pays one request per block for its lanes, and
a server's cost per request, not per byte, then bounds the replay.
Compaction merges consecutive blocks into blocks of about `COMPACT_BYTES`:
each lane's frames of the merged blocks are put back to back as one lane
frame of several zstd frames (`Part`s, listed in the `WSB2` header), so the
lines, their order, lanes and seqs are unchanged, nothing is recompressed,
and a reader still decompresses a flush's worth at a time.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from harness.errors import RecordingError
from harness.recording.blocks import Block, BlockHeader, Damage, LaneRef, Part, scan_file
from harness.recording.index import IndexBuilder

__all__ = ["COMPACT_BYTES", "SUFFIX", "Compacted", "compact_segment"]

COMPACT_BYTES: Final = 8 << 20  # a merged block, at most (unless one flush is larger)
SUFFIX: Final = ".compacting"  # the rewritten segment, until it replaces the original


@dataclass(frozen=True, slots=True)
class Compacted:
    """What the manifest says of a segment once compacted."""

    blocks: int
    bytes: int
    sha256: str
    index: str


def compact_segment(path: Path, target: int = COMPACT_BYTES) -> Compacted:
    """Rewrite the finished segment file `path` with its blocks merged into blocks of
    at most `target` bytes (written beside it, fsynced, then renamed over it: a crash
    leaves the old file or the new one, the same lines either way)."""
    data = path.read_bytes()
    groups: list[list[Block]] = []
    for item in scan_file(io.BytesIO(data), len(data), path.name):
        if isinstance(item, Damage):
            raise RecordingError(f"{path}: {item.where}; not compacted")
        if groups and item.end - groups[-1][0].offset <= target:  # blocks are contiguous
            groups[-1].append(item)
        else:
            groups.append([item])
    sha, index, written = hashlib.sha256(), IndexBuilder(), 0
    temporary = path.with_name(path.name + SUFFIX)
    with temporary.open("wb") as f:
        for group in groups:
            header, frames = _merged(group, data)
            encoded = header.encode()
            for piece in (encoded, *frames):
                f.write(piece)
                sha.update(piece)
            index.add(encoded, frames)
            written += len(encoded) + sum(map(len, frames))
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    return Compacted(len(groups), written, sha.hexdigest(), index.text())


def _frames(block: Block, data: bytes) -> list[tuple[LaneRef, bytes]]:
    """A block's lane frames, in file order, cut from its segment's bytes."""
    out, at = [], block.offset + block.header_size
    for ref in block.header.lanes:
        out.append((ref, data[at:at + ref.size]))
        at += ref.size
    return out


def _merged(group: list[Block], data: bytes) -> tuple[BlockHeader, list[bytes]]:
    """One block holding `group`'s lines: per lane, its frames back to back."""
    if len(group) == 1:
        return group[0].header, [frame for _, frame in _frames(group[0], data)]
    pieces: dict[int, list[tuple[tuple[Part, ...], bytes]]] = {}
    for block in group:
        for ref, frame in _frames(block, data):
            pieces.setdefault(ref.lane, []).append((block.header.pieces(ref), frame))
    refs, frames = [], []
    for lane in sorted(pieces):
        own = pieces[lane]
        parts = tuple(part for parted, _ in own for part in parted)
        refs.append(LaneRef(lane, sum(p.events for p in parts), sum(p.size for p in parts),
                            parts))
        frames.append(b"".join(frame for _, frame in own))
    first, last = group[0].header, group[-1].header
    return BlockHeader(first.first_seq, last.last_seq, first.first_recv, last.last_recv,
                       tuple(refs)), frames
