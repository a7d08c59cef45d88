"""Recordings made offline: from existing JSON-lines dumps, or synthesised."""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import orjson
import zstandard

from harness.errors import RecordingError
from harness.progress import Progress
from harness.recording.envelope import UNPARSED
from harness.recording.lanes import DEFAULT_LANES
from harness.recording.manifest import Manifest
from harness.recording.writer import RecordingWriter


@contextmanager
def open_dump(path: Path) -> Iterator[BinaryIO]:
    """Open a JSON-lines dump, decompressing `.zst` (across frames) or `.gz`."""
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise RecordingError(f"{path}: cannot open ({exc.strerror})") from None
    with raw:
        if path.suffix == ".zst":
            reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
            yield io.BufferedReader(reader)
        elif path.suffix == ".gz":
            yield gzip.GzipFile(fileobj=raw)  # type: ignore[misc]
        else:
            yield raw


def _sse_id(value: object) -> str | None:
    """The EventStreams id the event would have had, from its `meta`."""
    if not isinstance(value, dict):
        return None
    meta = value.get("meta")
    if not isinstance(meta, dict) or "topic" not in meta:
        return None
    position = {"topic": meta["topic"], "partition": meta.get("partition", 0)}
    if "offset" in meta:
        position["offset"] = meta["offset"]
    elif isinstance(value.get("timestamp"), int):
        position["timestamp"] = value["timestamp"] * 1000
    return orjson.dumps([position]).decode()


def import_dumps(
    files: list[Path], out: str | os.PathLike[str], *, lanes: int = DEFAULT_LANES,
    progress: bool | None = None,
) -> Manifest:
    """Turn JSON-lines dumps, in stream order, into one recording.

    Lines that are not JSON are kept (flagged) like the recorder keeps them;
    blank lines are skipped. Receive times are unknown, so `recv` is the
    event's own timestamp, kept non-decreasing.
    """
    for path in files:
        if not path.is_file():
            raise RecordingError(f"{path}: no such file")
    report = Progress(f"import {out}", enabled=progress)
    received = 0.0
    with RecordingWriter(out, source="import:" + ",".join(str(f) for f in files),
                         lanes=lanes) as writer:
        for path in files:
            with open_dump(path) as dump:
                for line in dump:
                    payload = line.rstrip(b"\r\n")
                    if not payload.strip():
                        continue
                    try:
                        value = orjson.loads(payload)
                    except orjson.JSONDecodeError:
                        value = None
                    ts = value.get("timestamp") if isinstance(value, dict) else None
                    if type(ts) is int:
                        received = max(received, float(ts))
                    writer.append(payload, _sse_id(value), received,
                                  value if value is not None else UNPARSED)
                    report.update(writer.events)
        report.done()
        return writer.manifest


def synthesize(out: str | os.PathLike[str], *, events: int, seed: int,
               lanes: int = DEFAULT_LANES, progress: bool | None = None) -> Manifest:
    """A synthetic recording of `events` realistic events, deterministic per seed."""
    from harness.recording.synth import synthetic_events

    if events < 0:
        raise ValueError(f"--events must be >= 0, got {events}")
    report = Progress(f"synth {out}", total=events, enabled=progress)
    with RecordingWriter(out, source=f"synthetic:seed={seed}", lanes=lanes) as writer:
        for event in synthetic_events(events, seed):
            writer.append(event.payload, event.sse_id, event.received)
            report.update(writer.events)
        report.done()
        return writer.manifest
