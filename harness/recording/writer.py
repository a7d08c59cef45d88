"""Writing a recording: `RecordingWriter`, and recovery of one a killed writer left.

Events are buffered per lane and written as one block per flush (at least
once a second while recording). A segment being written is
`seg-NNNNNN.jsonl.zst.partial`; when it is finished it is fsynced, renamed
and entered in the manifest. A writer holds an advisory lock on its
directory, so two writers never share one recording.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import zstandard

from harness.errors import RecordingError, UsageError
from harness.eventstreams.ids import event_key
from harness.files import DirectoryLock, sha256_file
from harness.recording.blocks import PARTIAL, BlockHeader, Damage, LaneRef, scan_blocks
from harness.recording.compact import SUFFIX as COMPACTING
from harness.recording.compact import compact_segment
from harness.recording.envelope import UNPARSED, encode_envelope
from harness.recording.index import IndexBuilder, index_of
from harness.recording.lanes import DEFAULT_LANES, MAX_LANES, lane_for
from harness.recording.manifest import MERGED_VERSION, Manifest, Segment, note_event, utc_now
from harness.recording.reader import Recording

__all__ = ["RECENT_IDS", "RecordingWriter", "ResumePoint"]


class Publisher(Protocol):
    """Where a writer's recording is also published as it goes (`recording.upload`)."""

    def publish(self, directory: Path, manifest: Manifest) -> None: ...
    def renew(self) -> None: ...
    def release(self) -> None: ...


@dataclass(slots=True)
class _Pending:
    lines: list[list[bytes]]
    first_seq: int = 0
    count: int = 0
    first_recv: float = 0.0
    last_recv: float = 0.0


class RecordingWriter:
    """Appends received events to a new recording directory.

    Events are buffered per lane and written as one block when `block_events`
    are pending or `flush_interval` seconds have passed (call `flush_if_due`
    from an idle loop too). Segments rotate at `segment_bytes` or
    `segment_seconds`; a finished segment is fsynced, renamed from `.partial`
    and entered in the manifest. Never overwrites: a new writer refuses an
    existing directory; `resume=True` continues an *unfinished* recording
    after its last complete block (see `resume_point`).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        source: str,
        lanes: int = DEFAULT_LANES,
        block_events: int = 4096,
        flush_interval: float = 1.0,
        segment_bytes: int = 64 << 20,
        segment_seconds: float | None = None,
        level: int = 3,
        clock: Callable[[], float] = time.monotonic,
        resume: bool = False,
        upload: Publisher | None = None,
        compact_bytes: int | None = None,
    ) -> None:
        self.directory = Path(directory)
        if not 1 <= lanes <= MAX_LANES:
            raise UsageError(f"--lanes must be 1..{MAX_LANES}, got {lanes}")
        if self.directory.is_symlink():
            raise RecordingError(f"{self.directory}: is a symlink; refusing to write through it")
        if self.directory.exists() and not self.directory.is_dir():
            raise RecordingError(f"{self.directory}: exists and is not a directory")
        self.directory.mkdir(parents=True, exist_ok=True)
        # Held until close: a second writer (or recorder resuming) is refused, not mixed in.
        self._lock = DirectoryLock(self.directory, "recording")
        try:
            self.resume_point = ResumePoint()
            self.resumed = resume
            if resume:
                self.manifest, self.resume_point = _recover(self.directory, compact_bytes)
                lanes = self.manifest.lanes
            else:
                if any(self.directory.iterdir()):
                    raise RecordingError(f"{self.directory}: already exists and is not empty;"
                                         " refusing to overwrite")
                self.manifest = Manifest(source=source, lanes=lanes)
        except BaseException:
            self._lock.release()
            raise
        if compact_bytes is not None:  # merged blocks need a reader of this version
            self.manifest.version = MERGED_VERSION
        self.block_events = block_events
        self.compact_bytes = compact_bytes
        self.flush_interval = flush_interval
        self.segment_bytes = segment_bytes
        self.segment_seconds = segment_seconds
        self._clock = clock
        self._cctx = zstandard.ZstdCompressor(level=level, write_checksum=True)
        self._seq = self.resume_point.last_seq
        self._pending = _Pending([[] for _ in range(lanes)])
        self._file: BinaryIO | None = None
        self._sha = hashlib.sha256()
        self._index = IndexBuilder()
        self._segment: Segment | None = None
        self._segment_opened = 0.0
        self._last_flush = clock()
        self.closed = False
        self._upload = upload
        self._commit()

    @property
    def events(self) -> int:
        return self._seq

    @property
    def bytes_written(self) -> int:
        done = sum(s.bytes for s in self.manifest.segments if s.complete)
        return done + (self._segment.bytes if self._segment and not self._segment.complete else 0)

    def append(self, payload: bytes | str, sse_id: str | None, received: float,
               parsed: Any = UNPARSED) -> tuple[int, bytes, Any]:
        """Buffer one event; return its sequence number, recording line and parsed payload."""
        if self.closed:
            raise RecordingError(f"{self.directory}: recording already closed")
        self._seq += 1
        seq = self._seq
        line, value = encode_envelope(seq, sse_id, received, payload, parsed)
        self.append_line(seq, sse_id, received, line, value,
                         lane_for(value, seq, self.manifest.lanes))
        return seq, line, value

    def append_line(self, seq: int, sse_id: str | None, received: float, line: bytes,
                    value: Any, lane: int) -> None:
        """Buffer one recording line as it is, in `lane`: how lanes are derived from
        another recording (the caller keeps `seq` increasing and `lane` in range)."""
        if self.closed:
            raise RecordingError(f"{self.directory}: recording already closed")
        self._seq = seq
        pending = self._pending
        if pending.count == 0:
            pending.first_seq, pending.first_recv = seq, received
        pending.lines[lane].append(line)
        pending.count += 1
        pending.last_recv = received
        note_event(self._open_segment(), seq, sse_id, received, value)
        if pending.count >= self.block_events:
            self.flush()
        else:
            self.flush_if_due()

    def flush_if_due(self) -> None:
        if self._clock() - self._last_flush >= self.flush_interval:
            self.flush()
            if self._upload is not None:
                self._upload.renew()

    def flush(self) -> None:
        """Write pending events as one block (frames + header in one write)."""
        self._last_flush = self._clock()
        pending = self._pending
        if pending.count == 0:
            return
        refs, frames = [], []
        for lane, lines in enumerate(pending.lines):
            if lines:
                frame = self._cctx.compress(b"\n".join(lines) + b"\n")
                refs.append(LaneRef(lane, len(lines), len(frame)))
                frames.append(frame)
                lines.clear()
        header = BlockHeader(pending.first_seq, self._seq, pending.first_recv, pending.last_recv,
                             tuple(refs))
        encoded = header.encode()
        data = encoded + b"".join(frames)
        assert self._file is not None and self._segment is not None
        self._file.write(data)
        self._file.flush()
        self._sha.update(data)
        self._index.add(encoded, frames)
        segment = self._segment
        segment.events += pending.count
        segment.blocks += 1
        segment.bytes += len(data)
        pending.count = 0
        if segment.bytes >= self.segment_bytes or (
            self.segment_seconds is not None
            and self._clock() - self._segment_opened >= self.segment_seconds
        ):
            self._finish_segment()

    def end_segment(self) -> None:
        """Flush and finish the open segment now (an empty one if none is open); the
        next event starts a new one."""
        self.flush()
        self._open_segment()
        self._finish_segment()

    def _open_segment(self) -> Segment:
        if self._segment is not None:
            return self._segment
        name = f"seg-{len(self.manifest.segments) + 1:06d}.jsonl.zst"
        path = self.directory / (name + PARTIAL)
        self._file = path.open("xb")
        self._sha = hashlib.sha256()
        self._index = IndexBuilder()
        self._segment = Segment(file=name)
        self._segment_opened = self._clock()
        self.manifest.segments.append(self._segment)
        self.manifest.save(self.directory)
        return self._segment

    def _finish_segment(self) -> None:
        assert self._file is not None and self._segment is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        segment = self._segment
        final = self.directory / segment.file
        if final.exists():
            raise RecordingError(f"{final}: exists; refusing to overwrite")
        partial = self.directory / (segment.file + PARTIAL)
        if self.compact_bytes is not None:
            _compact(segment, partial, self.compact_bytes)
        else:
            segment.sha256, segment.index = self._sha.hexdigest(), self._index.text()
        os.replace(partial, final)
        segment.complete = True
        self._file, self._segment = None, None
        self._commit()

    def close(self, *, complete: bool = True) -> Manifest:
        """Flush, finalise the open segment and mark the manifest complete."""
        if self.closed:
            return self.manifest
        self.flush()
        if self._segment is not None:
            self._finish_segment()
        self.manifest.closed = utc_now()
        self.manifest.complete = complete
        try:
            self._commit()
        finally:
            self.closed = True
            self._release()
        return self.manifest

    def _commit(self) -> None:
        """Save the manifest; publish the recording too, if it is published."""
        self.manifest.save(self.directory)
        if self._upload is not None:
            self._upload.publish(self.directory, self.manifest)

    def _release(self) -> None:
        self._lock.release()
        if self._upload is not None:
            self._upload.release()

    def abandon(self) -> None:
        """Stop without finishing anything (the files stay resumable); release the lock."""
        self.closed = True
        if self._file is not None:
            self._file.close()
        self._release()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(complete=exc_type is None)


@dataclass(frozen=True)
class ResumePoint:
    """Where an unfinished recording left off, for a recorder to continue it."""

    last_seq: int = 0
    last_id: str | None = None  # the last SSE id stored (events without one are skipped)
    recent_event_ids: tuple[str, ...] = ()  # event_key of the last events, to de-duplicate
    dropped: str | None = None  # the cut-short block that was discarded, if any


RECENT_IDS = 20_000


def _compact(segment: Segment, path: Path, target: int) -> None:
    """Compact a finished segment file and say so in its manifest entry."""
    done = compact_segment(path, target)
    segment.blocks, segment.bytes = done.blocks, done.bytes
    segment.sha256, segment.index = done.sha256, done.index


def _recover(directory: Path, compact_bytes: int | None = None
             ) -> tuple[Manifest, ResumePoint]:
    """Finish the segments a killed writer left: drop a cut-short last block,
    recompute the manifest entry (compacting it, with `compact_bytes`), fsync
    and rename. Returns the manifest to continue and where the recording ends."""
    for stray in directory.glob("*" + COMPACTING):  # a compaction cut short
        stray.unlink()
    manifest = Manifest.load(directory)
    if manifest.complete:
        raise RecordingError(f"{directory}: recording is complete; refusing to append to it"
                             " (record into a new directory)")
    recording = Recording(directory)
    dropped = None
    for index, segment in enumerate(list(manifest.segments)):
        if segment.complete:
            continue
        path = recording.segment_path(index)
        fresh = Segment(file=segment.file)
        end = 0
        for item in scan_blocks(path):
            if isinstance(item, Damage):
                dropped = item.where
                break
            end = item.end
            fresh.blocks += 1
            for env in recording.block_envelopes(item):
                fresh.events += 1
                note_event(fresh, env.seq, env.id, env.recv, env.data)
        with path.open("r+b") as f:
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
        fresh.bytes = end
        if compact_bytes is not None:
            _compact(fresh, path, compact_bytes)
        else:
            fresh.sha256 = sha256_file(path)
            with path.open("rb") as f:
                fresh.index = index_of(f, end, segment.file)
        fresh.complete = True
        manifest.segments[index] = fresh
    manifest.segments = [s for s in manifest.segments if s.events]
    for segment in manifest.segments:
        final = directory / segment.file
        if not final.exists():
            os.replace(directory / (segment.file + PARTIAL), final)
    for orphan in directory.glob("*" + PARTIAL):  # empty segments: nothing was in them
        if orphan.stat().st_size == 0:
            orphan.unlink()
    manifest.save(directory)
    last_seq = manifest.segments[-1].last_seq or 0 if manifest.segments else 0
    recent, last_id = _tail_ids(Recording(directory))
    return manifest, ResumePoint(last_seq, last_id, recent, dropped)


def _tail_ids(recording: Recording) -> tuple[tuple[str, ...], str | None]:
    """The de-duplication keys of the last `RECENT_IDS` events and the last SSE id.

    Walks back over as many segments as it takes: every resume starts a new
    segment, so after quick crashes the last events span many small ones.
    """
    recent: list[str] = []
    last_id: str | None = None
    for index in reversed(range(len(recording.manifest.segments))):
        keys: list[str] = []
        segment_last: str | None = None
        for env in recording.segment_envelopes(index):
            key = event_key(env.data, env.id)
            if key is not None:
                keys.append(key)
            if env.id is not None:
                segment_last = env.id
        if last_id is None:
            last_id = segment_last
        recent[:0] = keys
        if len(recent) >= RECENT_IDS and last_id is not None:
            break
    return tuple(recent[-RECENT_IDS:]), last_id
