"""`harness verify`: check a recording end to end and say exactly where it is damaged."""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import zstandard

from harness.errors import RecordingError
from harness.files import sha256_file
from harness.recording.blocks import Block
from harness.recording.envelope import Envelope, EnvelopeError
from harness.recording.index import index_of
from harness.recording.lanes import lane_of
from harness.recording.manifest import Segment, note_event
from harness.recording.reader import Recording
from harness.store.location import BucketPath, location


@dataclass
class VerifyReport:
    """What `verify` found: counts, and every problem with its place."""

    path: Path | BucketPath
    segments: int = 0
    blocks: int = 0
    events: int = 0
    not_json: int = 0
    lanes: int = 0
    compressed_bytes: int = 0
    raw_bytes: int = 0
    first_received: float | None = None
    last_received: float | None = None
    complete: bool = False
    truncated: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    event_ids: dict[int, int] = field(default_factory=dict, repr=False)  # hash(meta.id) -> seq

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def ratio(self) -> float:
        return self.raw_bytes / self.compressed_bytes if self.compressed_bytes else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"recording": str(self.path), "ok": self.ok, "complete": self.complete,
                "events": self.events, "not_json": self.not_json, "segments": self.segments,
                "blocks": self.blocks, "lanes": self.lanes,
                "compressed_bytes": self.compressed_bytes, "raw_bytes": self.raw_bytes,
                "compression": round(self.ratio, 2), "first_received": self.first_received,
                "last_received": self.last_received, "truncated": self.truncated,
                "errors": self.errors}


_MAX_ERRORS = 50


def verify(path: str | os.PathLike[str] | BucketPath) -> VerifyReport:
    """Check manifest vs. segments, hashes, block structure, lanes, every line, seq contiguity."""
    report = VerifyReport(location(path))
    try:
        recording = Recording(path)
    except RecordingError as exc:
        report.errors.append(str(exc))
        return report
    manifest = recording.manifest
    report.lanes, report.complete = manifest.lanes, manifest.complete
    dctx = zstandard.ZstdDecompressor()
    expected_seq = 1
    for index, segment in enumerate(manifest.segments):
        report.segments += 1
        try:
            size, digest, held_index = _held(recording, index)
        except RecordingError as exc:
            report.errors.append(str(exc))
            return report
        report.compressed_bytes += size
        if segment.complete:
            if segment.bytes != size:
                report.errors.append(f"{segment.file}: {size} bytes on disk, manifest says"
                                     f" {segment.bytes}")
            if digest != segment.sha256:
                report.errors.append(f"{segment.file}: sha256 {digest[:16]}… does not match"
                                     f" the manifest's {str(segment.sha256)[:16]}…")
        checker = _SegmentChecker(segment.file, manifest.lanes, expected_seq, report)
        try:
            for block in recording.segment_blocks(index):
                assert isinstance(block, Block)  # a strict Recording raises on damage
                checker.block(block, recording, dctx)
                if len(report.errors) >= _MAX_ERRORS:
                    return report
        except RecordingError as exc:
            report.errors.append(str(exc))
            return report
        expected_seq = checker.next_seq
        if segment.complete:
            # The entry the writer would have made for what the file holds.
            held = checker.entry
            held.bytes, held.sha256, held.complete = segment.bytes, segment.sha256, True
            # Recordings made before the block index have none: nothing to compare.
            held.index = held_index if segment.index is not None else None
            if held != segment:
                differ = [f"{name} {getattr(held, name)!r}, manifest says"
                          f" {getattr(segment, name)!r}"
                          for name in Segment.__slots__
                          if getattr(held, name) != getattr(segment, name)]
                report.errors.append(f"{segment.file}: holds {'; '.join(differ)}")
    report.truncated = list(recording.truncated)
    if manifest.complete and report.truncated:
        report.errors.extend(report.truncated)
    return report


def _held(recording: Recording, index: int) -> tuple[int, str, str | None]:
    """What a segment holds: its size, sha256 and block index (None if its blocks
    cannot be indexed: the block walk reports why)."""
    segment = recording.manifest.segments[index]
    if recording.remote is not None:
        data = recording.remote.segment(segment, checked=False)
        f: BinaryIO = io.BytesIO(data)
        size, digest = len(data), hashlib.sha256(data).hexdigest()
    else:
        path = recording.segment_path(index)
        size, digest = path.stat().st_size, sha256_file(path)
        f = path.open("rb")
    with f:
        try:
            return size, digest, index_of(f, size, segment.file)
        except RecordingError:
            return size, digest, None


class _SegmentChecker:
    """Walks one segment's blocks, counting lines the way `zstdcat` numbers them."""

    def __init__(self, name: str, lanes: int, next_seq: int, report: VerifyReport) -> None:
        self.name, self.lanes, self.next_seq, self.report = name, lanes, next_seq, report
        self.line = 0
        self.entry = Segment(file=name)

    def error(self, where: str, message: str) -> None:
        self.report.errors.append(f"{self.name}: {where}: {message}")

    def block(self, block: Block, recording: Recording, dctx: zstandard.ZstdDecompressor) -> None:
        report, header = self.report, block.header
        report.blocks += 1
        where = f"block at byte {block.offset}"
        if header.first_seq != self.next_seq:
            self.error(where, f"starts at seq {header.first_seq}, expected {self.next_seq}")
        seen: dict[int, tuple[str | None, float, Any]] = {}
        for lane, pieces in recording.read_pieces(block, None, dctx):
            assert isinstance(pieces, list)  # a strict Recording raises on damage
            ref = next(r for r in header.lanes if r.lane == lane)
            lines = []
            for number, (piece, part) in enumerate(zip(pieces, header.pieces(ref),
                                                       strict=True), start=1):
                report.raw_bytes += len(piece)
                own = piece.splitlines()
                lines += own
                if ref.parts and len(own) != part.events:
                    self.error(where, f"lane {lane} frame part {number} has {len(own)} lines,"
                                      f" header says {part.events}")
            if len(lines) != ref.events:
                self.error(where, f"lane {lane} frame has {len(lines)} lines, header says"
                                  f" {ref.events}")
            previous = 0
            for raw in lines:
                self.line += 1
                got = self._line(raw, lane, previous)
                if got is not None:
                    previous = got[0]
                    seen[got[0]] = got[1:]
        # Distinct ints fill first..last exactly iff count, min and max agree. (Never
        # build the range: a damaged header can claim half a billion seqs.)
        first, last = header.first_seq, header.last_seq
        inside = sum(1 for seq in seen if first <= seq <= last)
        if inside != len(seen) or inside != last - first + 1:
            self.error(where, f"seqs are not exactly {first}..{last}"
                              f" ({last - first + 1 - inside} missing, {len(seen) - inside}"
                              " extra)")
        self.next_seq = header.last_seq + 1
        entry = self.entry
        for seq in sorted(seen):
            note_event(entry, seq, *seen[seq])
            if report.first_received is None:
                report.first_received = entry.first_received
            report.last_received = entry.last_received
        entry.events += len(seen)
        entry.blocks += 1
        report.events += len(seen)

    def _line(self, raw: bytes, lane: int, previous: int
              ) -> tuple[int, str | None, float, Any] | None:
        where = f"line {self.line}"
        try:
            env = Envelope.decode(raw)
        except EnvelopeError as exc:
            self.error(where, str(exc))
            return None
        seq = env.seq
        if seq <= previous:
            self.error(where, f"seq {seq} after {previous} in lane {lane}")
        if not env.is_json:
            self.report.not_json += 1
        else:
            user = env.data.get("user") if isinstance(env.data, dict) else None
            if isinstance(user, str) and lane_of(user, self.lanes) != lane:
                self.error(where, f"seq {seq}: user {user!r} is in lane {lane}, belongs in"
                                  f" {lane_of(user, self.lanes)}")
            meta = env.data.get("meta") if isinstance(env.data, dict) else None
            uid = meta.get("id") if isinstance(meta, dict) else None
            if isinstance(uid, str):
                first = self.report.event_ids.setdefault(hash(uid), seq)
                if first != seq:
                    self.error(where, f"seq {seq}: meta.id {uid!r} repeats seq {first}'s"
                                      " (the recording holds an event twice)")
        return seq, env.id, env.recv, env.data
