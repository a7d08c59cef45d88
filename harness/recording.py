"""The recording format (SPEC section 4): persistence only, no stream logic.

A recording is a directory holding `manifest.json` and segments
`seg-NNNNNN.jsonl.zst`. A segment is a sequence of *blocks*; a block is what
one flush wrote: a zstd skippable frame (the block header) followed by one
independent zstd frame per *lane*. Each frame holds JSON lines, one envelope
per event::

    {"seq": 17, "id": "<raw SSE id>", "recv": 1700000000.25, "data": {...}}
    {"seq": 18, "id": "...", "recv": ..., "raw": "<not JSON>", "error": "not-json"}

Lanes are key shards: every event of one `user` goes to lane
`crc32(user) % lanes`, so a lane is an ordered stream that holds *all* of
its users' events. That lets several Bytewax workers replay lanes in
parallel while each user's events stay in one ordered stream, which is what
makes per-user lateness (and so the output) independent of the worker
count. The global `seq` keeps arrival order recoverable, and `zstdcat` still
prints every line, because decoders skip skippable frames.

A killed writer leaves a `.partial` segment whose last block may be cut
short; readers drop that incomplete block and report it. Since a block is
written with one `write` after all earlier ones, what survives is always a
prefix of the stream: no holes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Final, ParamSpec, TypeVar

import orjson
import zstandard

FORMAT: Final = "wikistream-recording"
VERSION: Final = 1
MANIFEST: Final = "manifest.json"
PARTIAL: Final = ".partial"
DEFAULT_LANES: Final = 8
NOT_JSON: Final = "not-json"

P = ParamSpec("P")
R = TypeVar("R")

_SKIPPABLE_MAGIC: Final = 0x184D2A5E
_FRAME_HEAD = struct.Struct("<II")  # magic, payload size
_BLOCK_HEAD = struct.Struct("<4sQQddH")  # tag, first/last seq, first/last recv, n frames
_LANE_REF = struct.Struct("<HII")  # lane, events, compressed size
_BLOCK_TAG: Final = b"WSB1"


class RecordingError(Exception):
    """A recording is missing, damaged or inconsistent; the message says where."""


def logging_errors(fn: Callable[P, R], error_log: Path | None) -> Callable[P, R]:
    """`fn`, also appending any `RecordingError` it raises to `error_log`.

    Bytewax may lose an exception on its way out of a multi-process cluster;
    the runner reads the log to report the place instead.
    """
    if error_log is None:
        return fn

    def logged(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except RecordingError as exc:
            with error_log.open("a") as log:
                log.write(f"{exc}\n")
            raise

    return logged


def utc_now() -> str:
    return datetime.now(tz=UTC).isoformat(timespec="milliseconds")


def event_key(value: Any, sse_id: str | None) -> str | None:
    """An event's identity for de-duplication: `meta.id`, else its SSE id."""
    meta = value.get("meta") if isinstance(value, dict) else None
    uid = meta.get("id") if isinstance(meta, dict) else None
    if isinstance(uid, str):
        return uid
    return f"sse:{sse_id}" if sse_id else None


def lane_name(lane: int) -> str:
    """The partition and key name of a lane in the flow."""
    return f"lane-{lane:05d}"


def lane_for(value: Any, seq: int, lanes: int) -> int:
    """The lane of an event: its user's, or spread by `seq` when it has no string user."""
    user = value.get("user") if isinstance(value, dict) else None
    return lane_of(user, lanes) if isinstance(user, str) else seq % lanes


def lane_of(user: str, lanes: int) -> int:
    """The lane of a user's events; stable across runs and machines."""
    return zlib.crc32(user.encode("utf-8", "surrogatepass")) % lanes


# --------------------------------------------------------------------- blocks


@dataclass(frozen=True, slots=True)
class LaneRef:
    """Where one lane's frame sits in a block."""

    lane: int
    events: int
    size: int


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

    def encode(self) -> bytes:
        payload = _BLOCK_HEAD.pack(
            _BLOCK_TAG, self.first_seq, self.last_seq, self.first_recv, self.last_recv,
            len(self.lanes),
        ) + b"".join(_LANE_REF.pack(r.lane, r.events, r.size) for r in self.lanes)
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
        if tag != _BLOCK_TAG or size != _BLOCK_HEAD.size + n * _LANE_REF.size:
            raise ValueError("not a block header (bad tag or lane table)")
        refs = tuple(LaneRef(*ref) for ref in _LANE_REF.iter_unpack(payload[_BLOCK_HEAD.size:]))
        return cls(first, last, first_recv, last_recv, refs), _FRAME_HEAD.size + size


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
    name = path.name.removesuffix(PARTIAL)
    size = path.stat().st_size
    with path.open("rb") as f:
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


# ------------------------------------------------------------------- manifest


@dataclass(slots=True)
class Segment:
    """Manifest entry of one segment file."""

    file: str
    complete: bool = False
    events: int = 0
    blocks: int = 0
    bytes: int = 0
    sha256: str | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    first_id: str | None = None
    last_id: str | None = None
    first_received: float | None = None
    last_received: float | None = None
    min_timestamp: int | None = None
    max_timestamp: int | None = None


@dataclass(slots=True)
class Manifest:
    """What `manifest.json` says about a recording."""

    source: str
    lanes: int = DEFAULT_LANES
    created: str = field(default_factory=utc_now)
    closed: str | None = None
    complete: bool = False
    format: str = FORMAT
    version: int = VERSION
    lane_key: str = "crc32(utf8(user)) % lanes; events without a string user: seq % lanes"
    segments: list[Segment] = field(default_factory=list)

    @property
    def events(self) -> int:
        return sum(s.events for s in self.segments)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST
        if not directory.is_dir():
            raise RecordingError(f"{directory}: no such recording directory")
        try:
            raw = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            raise RecordingError(f"{path}: missing; not a recording") from None
        except orjson.JSONDecodeError as exc:
            raise RecordingError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise RecordingError(f"{path}: not a {FORMAT} manifest")
        if raw.get("version") != VERSION:
            raise RecordingError(
                f"{path}: format version {raw.get('version')!r}, this harness reads {VERSION}")
        try:
            segments = [Segment(**s) for s in raw.pop("segments")]
            known = {f.name for f in fields(cls)}
            manifest = cls(**{k: v for k, v in raw.items() if k in known}, segments=segments)
        except (TypeError, KeyError) as exc:
            raise RecordingError(f"{path}: malformed manifest ({exc})") from None
        if not isinstance(manifest.lanes, int) or not 1 <= manifest.lanes <= 65535:
            raise RecordingError(f"{path}: lanes must be 1..65535, got {manifest.lanes!r}")
        for seg in manifest.segments:
            if "/" in seg.file or "\\" in seg.file or seg.file.startswith("."):
                raise RecordingError(f"{path}: segment name {seg.file!r} is not a plain file name")
        return manifest

    def save(self, directory: Path) -> None:
        """Replace the manifest atomically and durably."""
        write_atomically(directory / MANIFEST, [self.to_json()], durable=True)


def write_atomically(path: Path, chunks: Iterable[bytes], *, durable: bool = False) -> None:
    """Write under a temporary name, then rename into place, so that neither a reader
    nor a killed writer ever sees half a file. `durable` also fsyncs file and directory."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            f.writelines(chunks)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if durable:
        _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------- writer


def note_event(segment: Segment, seq: int, sse_id: str | None, received: float,
                value: Any) -> None:
    """Update a segment's manifest entry for one event (not its counts)."""
    if segment.first_seq is None:
        segment.first_seq, segment.first_id, segment.first_received = seq, sse_id, received
    segment.last_seq, segment.last_id, segment.last_received = seq, sse_id, received
    ts = value.get("timestamp") if isinstance(value, dict) else None
    if type(ts) is int:
        if segment.min_timestamp is None or ts < segment.min_timestamp:
            segment.min_timestamp = ts
        if segment.max_timestamp is None or ts > segment.max_timestamp:
            segment.max_timestamp = ts


UNPARSED: Final = object()


def encode_envelope(
    seq: int, sse_id: str | None, received: float, payload: bytes | str,
    parsed: Any = UNPARSED,
) -> tuple[bytes, Any]:
    """One recording line for a received payload, and the parsed payload.

    Valid JSON is embedded as sent (value-faithful, and no re-encoding cost);
    anything else is kept as text and flagged, never dropped. The parsed
    payload is `None` for non-JSON. A caller that has parsed the payload
    already passes it as `parsed`.
    """
    try:
        value = orjson.loads(payload) if parsed is UNPARSED else parsed
    except orjson.JSONDecodeError:
        text = (payload.decode("utf-8", "backslashreplace") if isinstance(payload, bytes)
                else payload)
        line = orjson.dumps(
            {"seq": seq, "id": sse_id, "recv": received, "raw": text, "error": NOT_JSON})
        return line, None
    raw = payload.encode() if isinstance(payload, str) else payload
    data = value if b"\n" in raw or b"\r" in raw else orjson.Fragment(raw)
    line = orjson.dumps({"seq": seq, "id": sse_id, "recv": received, "data": data})
    if raw.count(b"[") + raw.count(b"{") > _DEEP and not _loads_ok(line):
        # Nested so deeply that wrapping it in the envelope passes orjson's depth
        # limit: keep it as text, or the line could never be read back.
        line = orjson.dumps({"seq": seq, "id": sse_id, "recv": received,
                             "raw": raw.decode("utf-8", "backslashreplace"), "error": TOO_DEEP})
        return line, None
    return line, value


_DEEP = 500
TOO_DEEP: Final = "too-deep"


def _loads_ok(line: bytes) -> bool:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return True


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
    ) -> None:
        self.directory = Path(directory)
        if not 1 <= lanes <= 65535:
            raise ValueError(f"lanes must be 1..65535, got {lanes}")
        if self.directory.is_symlink():
            raise RecordingError(f"{self.directory}: is a symlink; refusing to write through it")
        self.resume_point = ResumePoint()
        if resume:
            self.manifest, self.resume_point = _recover(self.directory)
            lanes = self.manifest.lanes
        else:
            if self.directory.exists() and (
                not self.directory.is_dir() or any(self.directory.iterdir())
            ):
                raise RecordingError(
                    f"{self.directory}: already exists and is not empty; refusing to overwrite")
            self.directory.mkdir(parents=True, exist_ok=True)
            self.manifest = Manifest(source=source, lanes=lanes)
        self.block_events = block_events
        self.flush_interval = flush_interval
        self.segment_bytes = segment_bytes
        self.segment_seconds = segment_seconds
        self._clock = clock
        self._cctx = zstandard.ZstdCompressor(level=level, write_checksum=True)
        self._seq = self.resume_point.last_seq
        self._pending = _Pending([[] for _ in range(lanes)])
        self._file: BinaryIO | None = None
        self._sha = hashlib.sha256()
        self._segment: Segment | None = None
        self._segment_opened = 0.0
        self._last_flush = clock()
        self.closed = False
        self.manifest.save(self.directory)

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
        lane = lane_for(value, seq, self.manifest.lanes)
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
        return seq, line, value

    def flush_if_due(self) -> None:
        if self._clock() - self._last_flush >= self.flush_interval:
            self.flush()

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
        data = header.encode() + b"".join(frames)
        assert self._file is not None and self._segment is not None
        self._file.write(data)
        self._file.flush()
        self._sha.update(data)
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

    def _open_segment(self) -> Segment:
        if self._segment is not None:
            return self._segment
        name = f"seg-{len(self.manifest.segments) + 1:06d}.jsonl.zst"
        path = self.directory / (name + PARTIAL)
        self._file = path.open("xb")
        self._sha = hashlib.sha256()
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
        os.replace(self.directory / (segment.file + PARTIAL), final)
        segment.sha256 = self._sha.hexdigest()
        segment.complete = True
        self._file, self._segment = None, None
        self.manifest.save(self.directory)

    def close(self, *, complete: bool = True) -> Manifest:
        """Flush, finalise the open segment and mark the manifest complete."""
        if self.closed:
            return self.manifest
        self.flush()
        if self._segment is not None:
            self._finish_segment()
        self.manifest.closed = utc_now()
        self.manifest.complete = complete
        self.manifest.save(self.directory)
        self.closed = True
        return self.manifest

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(complete=exc_type is None)


@dataclass(frozen=True)
class ResumePoint:
    """Where an unfinished recording left off, for a recorder to continue it."""

    last_seq: int = 0
    last_id: str | None = None
    recent_event_ids: tuple[str, ...] = ()  # event_key of the last events, to de-duplicate
    dropped: str | None = None  # the cut-short block that was discarded, if any


RECENT_IDS = 20_000


def _recover(directory: Path) -> tuple[Manifest, ResumePoint]:
    """Finish the segments a killed writer left: drop a cut-short last block,
    recompute the manifest entry, fsync and rename. Returns the manifest to
    continue and where the recording ends."""
    manifest = Manifest.load(directory)
    if manifest.complete:
        raise RecordingError(f"{directory}: recording is complete; refusing to append to it"
                             " (record into a new directory)")
    recording = Recording(directory)
    recent: list[str] = []
    last_id, dropped = None, None
    for index, segment in enumerate(list(manifest.segments)):
        if segment.complete and index < len(manifest.segments) - 2:
            continue
        path = recording.segment_path(index)
        if not segment.complete:
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
                    note_event(fresh, env["seq"], env.get("id"), env["recv"], env.get("data"))
            with path.open("r+b") as f:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
            fresh.bytes = end
            fresh.sha256 = sha256_file(path)
            fresh.complete = True
            manifest.segments[index] = fresh
        for block in recording.segment_blocks(index):
            for env in recording.block_envelopes(block):
                key = event_key(env.get("data"), env.get("id"))
                if key is not None:
                    recent.append(key)
                last_id = env.get("id")
        del recent[:-RECENT_IDS]
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
    return manifest, ResumePoint(last_seq, last_id, tuple(recent), dropped)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------- reader


@dataclass(frozen=True, slots=True)
class LanePosition:
    """Where a lane reader continues: the next block to read and lines to skip in it."""

    segment: int = 0
    offset: int = 0
    skip: int = 0


class Recording:
    """Read access to a recording directory.

    `lane_frames` serves replay (one lane, decompressing only that lane's
    frames); `blocks`/`envelopes` serve tools that need every line in
    arrival order. A cut-short last block of an unfinished segment is
    dropped and described in `truncated`; anywhere else it is an error.
    """

    def __init__(self, directory: str | os.PathLike[str], *, skip_damaged: bool = False
                 ) -> None:
        self.directory = Path(directory)
        self.manifest = Manifest.load(self.directory)
        self.skip_damaged = skip_damaged
        self.truncated: list[str] = []
        self.missing: set[int] = set()
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
        for item in scan_blocks(self.segment_path(index), start, resync=self.skip_damaged):
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
        dctx = dctx or zstandard.ZstdDecompressor()
        if f is None:
            path = self.directory / block.segment
            if not path.exists():
                path = path.with_name(path.name + PARTIAL)
            with path.open("rb") as opened:
                return self.read_frames(block, lanes, dctx, opened)
        out: list[tuple[int, bytes | Damage]] = []
        offset = block.offset + block.header_size
        for ref in block.header.lanes:
            if lanes is None or ref.lane in lanes:
                f.seek(offset)
                raw = f.read(ref.size)
                try:
                    out.append((ref.lane, dctx.decompress(raw)))
                except zstandard.ZstdError as exc:
                    where = (f"{block.segment}: byte {offset}: lane {ref.lane} frame does"
                             f" not decompress ({exc})")
                    if not self.skip_damaged:
                        raise RecordingError(where) from None
                    out.append((ref.lane, Damage(where, ref.events, ref.lane)))
            offset += ref.size
        return out

    def lane_frames(
        self, lane: int, start: LanePosition = LanePosition()
    ) -> Iterator[tuple[int, Block | None, bytes | Damage]]:
        """This lane's frames from block position `start`: (segment index, block, lines).

        With `skip_damaged`, damage comes as `(index, None or block, Damage)`:
        a lane's own unreadable frames to that lane, damage to whole blocks
        or segments to lane 0 only, so every loss is reported exactly once.
        """
        dctx = zstandard.ZstdDecompressor()
        only = {lane}
        for index in range(start.segment, len(self.manifest.segments)):
            offset = start.offset if index == start.segment else 0
            with contextlib.ExitStack() as stack:
                f = (None if index in self.missing
                     else stack.enter_context(self.segment_path(index).open("rb")))
                for block in self.segment_blocks(index, offset):
                    if isinstance(block, Damage):
                        if lane == 0:
                            yield index, None, block
                    elif any(ref.lane == lane for ref in block.header.lanes):
                        ((_, data),) = self.read_frames(block, only, dctx, f)
                        yield index, block, data

    def block_envelopes(self, block: Block, dctx: zstandard.ZstdDecompressor | None = None
                        ) -> list[dict[str, Any]]:
        """A block's envelopes, parsed, in arrival (seq) order."""
        envelopes = [orjson.loads(line) for _, data in self.read_frames(block, None, dctx)
                     if isinstance(data, bytes) for line in data.splitlines()]
        envelopes.sort(key=_seq_of)
        return envelopes

    def envelopes(self) -> Iterator[dict[str, Any]]:
        """Every envelope, parsed, in arrival (seq) order."""
        dctx = zstandard.ZstdDecompressor()
        for block in self.blocks():
            yield from self.block_envelopes(block, dctx)

    def first_received(self) -> float | None:
        for seg in self.manifest.segments:
            if seg.first_received is not None:
                return seg.first_received
        with contextlib.suppress(StopIteration, RecordingError):
            return next(self.blocks()).header.first_recv
        return None


def _seq_of(envelope: dict[str, Any]) -> int:
    return envelope["seq"]
