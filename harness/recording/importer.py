"""Recordings made offline: from existing JSON-lines dumps, or synthesised."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Final

import orjson
import zstandard

from harness.errors import RecordingError, UsageError
from harness.eventstreams.ids import event_key
from harness.progress import Progress
from harness.recording.envelope import UNPARSED
from harness.recording.lanes import DEFAULT_LANES
from harness.recording.manifest import Manifest
from harness.recording.upload import open_writer
from harness.recording.writer import RecordingWriter

DEFAULT_MAX_LINE_BYTES: Final = 16 << 20  # Wikimedia events are about 1 KB
_ZSTD_MAGIC: Final = 0xFD2FB528
_SKIPPABLE: Final = range(0x184D2A50, 0x184D2A60)
_ZSTD_HEAD: Final = 18  # the longest zstd frame header, magic number included
_RLE_BLOCK: Final = 1
_RESERVED_BLOCK: Final = 3


def check_zstd(path: Path) -> None:
    """Raise `RecordingError` unless `path` is whole zstd frames from end to end.

    Only frame and block headers are read (block contents are seeked over),
    so this costs a few small reads per block. It finds what decompressing
    with `read_across_frames` silently accepts: a file cut short inside a
    frame, and bytes that are not zstd at all.
    """
    size = path.stat().st_size
    if size == 0:
        raise RecordingError(f"{path}: empty file, not zstd data")
    with path.open("rb") as f:
        offset = 0
        while offset < size:
            end = _frame_end(f, offset, path)
            if end > size:
                raise RecordingError(f"{path}: truncated: the zstd frame at byte {offset:,}"
                                     f" ends {end - size:,} bytes past the end of the file"
                                     f" ({size:,} bytes)")
            offset = end


def _frame_end(f: BinaryIO, start: int, path: Path) -> int:
    """Where the zstd (or skippable) frame that starts at byte `start` ends."""
    f.seek(start)
    head = f.read(_ZSTD_HEAD)
    magic = int.from_bytes(head[:4], "little")
    if len(head) >= 8 and magic in _SKIPPABLE:
        return start + 8 + int.from_bytes(head[4:8], "little")
    if len(head) < 4 or magic != _ZSTD_MAGIC:
        after = " (after the last complete frame)" if start else ""
        raise RecordingError(f"{path}: not zstd data at byte {start:,}{after}")
    try:
        position = start + zstandard.frame_header_size(head)
        checksum = zstandard.get_frame_parameters(head).has_checksum
    except zstandard.ZstdError as exc:
        problem = "truncated" if len(head) < _ZSTD_HEAD else "damaged"
        raise RecordingError(f"{path}: {problem}: zstd frame header at byte {start:,} ({exc})"
                             ) from None
    while True:  # blocks: a 3-byte header (last flag, type, size), then the content
        f.seek(position)
        header = f.read(3)
        if len(header) < 3:
            return position + 3  # beyond the end of the file: the caller reports it
        value = int.from_bytes(header, "little")
        kind, block_size = (value >> 1) & 3, value >> 3
        if kind == _RESERVED_BLOCK:
            raise RecordingError(f"{path}: damaged: zstd block at byte {position:,} has a"
                                 " reserved type")
        position += 3 + (1 if kind == _RLE_BLOCK else block_size)
        if value & 1:
            return position + (4 if checksum else 0)


@contextmanager
def open_dump(path: Path) -> Iterator[BinaryIO]:
    """Open a JSON-lines dump, decompressing `.zst` (across frames) or `.gz`.

    A `.zst` must pass `check_zstd` first: the decompressor does not notice
    a file cut short. A cut-short `.gz` raises `EOFError` when read.
    """
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise RecordingError(f"{path}: cannot open ({exc.strerror})") from None
    with raw:
        if path.suffix == ".zst":
            reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
            yield io.BufferedReader(reader, buffer_size=1 << 20)
        elif path.suffix == ".gz":
            yield gzip.GzipFile(fileobj=raw)  # type: ignore[misc]
        else:
            yield raw


def dump_lines(dump: BinaryIO, path: Path, max_line_bytes: int) -> Iterator[tuple[int, bytes]]:
    """(line number, line without its CR/LF ending) for every line of an open dump.

    Reads at most `max_line_bytes` + 2 bytes at a time, however long a line
    is. A line longer than `max_line_bytes` raises `RecordingError` naming
    the file and line; decompression and read errors raise one naming the
    file and the line being read (compressed data is read ahead, so the
    damage may lie a little further on).
    """
    number = 0
    while True:
        number += 1
        try:
            line = dump.readline(max_line_bytes + 2)
        except (EOFError, OSError, zlib.error, zstandard.ZstdError) as exc:
            raise RecordingError(f"{path}: {_read_problem(exc)} (while reading line"
                                 f" {number})") from None
        if not line:
            return
        payload = line.rstrip(b"\r\n")
        if len(payload) > max_line_bytes or (len(line) > max_line_bytes + 1
                                             and not line.endswith(b"\n")):
            raise RecordingError(f"{path} line {number}: longer than {max_line_bytes:,} bytes"
                                 " (max_line_bytes)")
        yield number, payload


def _read_problem(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "compressed data ends early (truncated file)"
    if isinstance(exc, zstandard.ZstdError):
        return f"damaged zstd data ({exc})"
    if isinstance(exc, gzip.BadGzipFile | zlib.error):
        return f"damaged gzip data ({exc})"
    assert isinstance(exc, OSError)
    return f"cannot read ({exc.strerror or exc})"


def _check_regular(path: Path) -> None:
    """Raise `RecordingError` unless `path` is a regular file: a directory cannot be read
    as lines, and a FIFO or device may block or never end."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise RecordingError(f"{path}: no such file") from None
    except OSError as exc:
        raise RecordingError(f"{path}: cannot open ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise RecordingError(f"{path}: is a directory, not a dump file")
    if not stat.S_ISREG(mode):
        raise RecordingError(f"{path}: is not a regular file (a FIFO, device or socket)")


def _sse_id(value: object) -> tuple[str | None, bool]:
    """The EventStreams id the event would have had, from its `meta`, and whether it
    names this one event (it holds its offset; a timestamp is shared by many events)."""
    if not isinstance(value, dict):
        return None, False
    meta = value.get("meta")
    if not isinstance(meta, dict) or "topic" not in meta:
        return None, False
    position = {"topic": meta["topic"], "partition": meta.get("partition", 0)}
    if "offset" in meta:
        position["offset"] = meta["offset"]
    elif isinstance(value.get("timestamp"), int):
        position["timestamp"] = value["timestamp"] * 1000
    return orjson.dumps([position]).decode(), "offset" in meta


def import_dumps(
    files: list[Path], out: str | os.PathLike[str], *, lanes: int = DEFAULT_LANES,
    progress: bool | None = None, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Manifest:
    """Turn JSON-lines dumps, in stream order, into one recording.

    Lines that are not JSON are kept (flagged) like the recorder keeps them;
    blank lines are skipped. An event seen before (the same `event_key`:
    EventStreams sends some twice) is dropped, like the recorder drops it,
    and counted in the manifest's `stream["duplicates"]`. Receive times are
    unknown, so `recv` is the event's own timestamp, kept non-decreasing.

    Bad input stops the import with a `RecordingError` naming the file (and
    line, if known); the message ends by saying what became of `out`.
    Missing files, paths that are not regular files, and `.zst` files that
    are cut short or not zstd are found before anything is written
    ("nothing written"). A line longer than
    `max_line_bytes` (never read whole: memory stays bounded), a cut-short or
    damaged `.gz`, or damaged zstd data are found while importing: the
    recording is closed unfinished, never marked complete ("left
    unfinished"). Over-long lines are not skipped: the recording would
    silently lack an event.
    """
    if max_line_bytes < 1:
        raise UsageError(f"max_line_bytes must be >= 1, got {max_line_bytes}")
    try:
        for path in files:
            _check_regular(path)
        for path in files:
            if path.suffix == ".zst":
                check_zstd(path)
    except RecordingError as exc:
        raise RecordingError(f"{exc}; nothing written") from None
    report = Progress(f"import {out}", enabled=progress)
    with open_writer(out, source="import:" + ",".join(str(f) for f in files), lanes=lanes,
                     fresh=True) as writer:
        try:
            received, duplicates = 0.0, 0
            seen: set[bytes] = set()
            for path in files:
                received, dropped = _import_dump(writer, path, received, max_line_bytes,
                                                 report, seen)
                duplicates += dropped
        except RecordingError as exc:
            raise RecordingError(f"{exc}; {out} left unfinished (not marked complete)"
                                 ) from None
        if duplicates:
            writer.manifest.stream["duplicates"] = duplicates  # as the recorder counts them
        report.done()
        return writer.manifest


def _import_dump(writer: RecordingWriter, path: Path, received: float, max_line_bytes: int,
                 report: Progress, seen: set[bytes]) -> tuple[float, int]:
    """Append one dump's events but those already in `seen` (digests of their
    `event_key`: small, whatever an id's length); returns the last receive time
    used and how many duplicates were dropped."""
    dropped = 0
    with open_dump(path) as dump:
        for _, payload in dump_lines(dump, path, max_line_bytes):
            if not payload.strip():
                continue
            try:
                value = orjson.loads(payload)
            except orjson.JSONDecodeError:
                value = None
            sse_id, exact = _sse_id(value)
            uid = event_key(value, sse_id if exact else None)
            if uid is not None:
                digest = hashlib.blake2b(uid.encode(errors="surrogatepass"), digest_size=16
                                         ).digest()
                if digest in seen:
                    dropped += 1
                    continue
                seen.add(digest)
            ts = value.get("timestamp") if isinstance(value, dict) else None
            if type(ts) is int:
                received = max(received, float(ts))
            writer.append(payload, sse_id, received, value if value is not None else UNPARSED)
            report.update(writer.events)
    return received, dropped


def synthesize(out: str | os.PathLike[str], *, events: int, seed: int,
               lanes: int = DEFAULT_LANES, progress: bool | None = None) -> Manifest:
    """A synthetic recording of `events` realistic events, deterministic per seed."""
    from harness.recording.synth import synthetic_events

    if events < 0:
        raise ValueError(f"--events must be >= 0, got {events}")
    report = Progress(f"synth {out}", total=events, enabled=progress)
    with open_writer(out, source=f"synthetic:seed={seed}", lanes=lanes, fresh=True) as writer:
        for event in synthetic_events(events, seed):
            writer.append(event.payload, event.sse_id, event.received)
            report.update(writer.events)
        report.done()
        return writer.manifest
