"""`manifest.json`: what a recording holds, segment by segment.

The manifest names the format and its version, the source, the lane count,
and per finished segment its event count, seq/id/receive-time/timestamp
ranges, size and sha256. `complete: true` marks a recording that was closed
cleanly. It is replaced atomically and durably on every change, and every
field is type-checked when it is read: a manifest is input like any other.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

import msgspec
import orjson

from harness.errors import RecordingError
from harness.files import write_atomically
from harness.recording.lanes import DEFAULT_LANES, LANE_RULE, MAX_LANES

__all__ = ["FORMAT", "MANIFEST", "MERGED_VERSION", "VERSION", "Manifest", "Segment",
           "note_event", "utc_now"]

FORMAT: Final = "wikistream-recording"
# A manifest says the lowest version that reads its recording, so an older harness
# still reads what it can. Version 2: a lane frame may hold several zstd frames
# (`WSB2` block headers, written by `recording.compact`).
VERSION: Final = 1
MERGED_VERSION: Final = 2
READABLE: Final = (VERSION, MERGED_VERSION)
MANIFEST: Final = "manifest.json"


def utc_now() -> str:
    return datetime.now(tz=timezone.utc).isoformat(timespec="milliseconds")


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
    # Where each block and lane frame is, with each frame's sha256 (`recording.index`):
    # what a reader far from the file fetches by. None in recordings made before it.
    index: str | None = None


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
    lane_key: str = LANE_RULE
    # What the recorder's stream went through, summed over its sessions (reconnects,
    # duplicates dropped, server errors, ...); empty for imported and synthetic ones.
    stream: dict[str, int] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)

    @property
    def events(self) -> int:
        return sum(s.events for s in self.segments)

    @property
    def has_receive_times(self) -> bool:
        """Whether `recv` is when events arrived (not so for imported dumps)."""
        return not self.source.startswith("import:")

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST
        if not directory.is_dir():
            raise RecordingError(f"{directory}: no such recording directory")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise RecordingError(f"{path}: missing; not a recording") from None
        except OSError as exc:
            raise RecordingError(f"{path}: cannot read ({exc.strerror})") from None
        return cls.parse(data, str(path))

    @classmethod
    def parse(cls, data: bytes, path: str) -> Manifest:
        """A manifest's bytes, read from `path` (named in every error), checked."""
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise RecordingError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise RecordingError(f"{path}: not a {FORMAT} manifest")
        if type(raw.get("version")) is not int or raw["version"] not in READABLE:
            raise RecordingError(
                f"{path}: format version {raw.get('version')!r}, this harness reads"
                f" {' and '.join(map(str, READABLE))}")
        manifest = _typed(raw, path)
        if not 1 <= manifest.lanes <= MAX_LANES:
            raise RecordingError(f"{path}: lanes must be 1..{MAX_LANES}, got {manifest.lanes!r}")
        for seg in manifest.segments:
            if "/" in seg.file or "\\" in seg.file or seg.file.startswith(".") or not seg.file:
                raise RecordingError(f"{path}: segment name {seg.file!r} is not a plain file name")
            for name in ("events", "blocks", "bytes"):
                if getattr(seg, name) < 0:
                    raise RecordingError(f"{path}: {seg.file}: {name} is negative")
        return manifest

    def save(self, directory: Path) -> None:
        """Replace the manifest atomically and durably."""
        write_atomically(directory / MANIFEST, [self.to_json()], durable=True)


def _typed(raw: dict[str, Any], path: str) -> Manifest:
    """`raw` as a `Manifest`, every field type-checked (msgspec; unknown fields ignored);
    a field of the wrong type is one `RecordingError` naming the file and the field."""
    try:
        return msgspec.convert(raw, Manifest)
    except msgspec.ValidationError as exc:
        raise _invalid(path, raw, exc) from None


# msgspec's error: what was wrong, then where: "Expected `int`, got `str` - at
# `$.segments[0].events`" (`[...]`: a value of an object), or "Object missing required
# field `file` - at `$.segments[0]`".
_STEP: Final = re.compile(r"\.(\w+)|\[(\d+)\]|\[(\.\.\.)\]")
_MISSING: Final = re.compile(r"Object missing required field `(\w+)`")
_EXPECTED: Final = re.compile(r"Expected `([^`]+)`")
# What a field of a container type holds, said as a whole (msgspec names the value in it).
_EXPECTS: Final = {"stream": "expected an object of whole numbers"}


def _invalid(path: str, raw: dict[str, Any], error: msgspec.ValidationError
             ) -> RecordingError:
    """msgspec's `error` as one line naming the manifest, the segment and the field."""
    detail, _, at = str(error).partition(" - at `$")
    steps: list[str | int] = [int(index) if index else name or value
                              for name, index, value in _STEP.findall(at)]
    missing = _MISSING.match(detail)
    if missing:
        steps.append(missing[1])
    where, owner = path, raw
    if steps[:1] == ["segments"]:
        if len(steps) == 1:
            return RecordingError(f"{path}: malformed manifest (segments is not a list)")
        index = int(steps[1])  # segments is a list: msgspec said so
        entry = raw["segments"][index]
        if len(steps) == 2 or steps[2] == "file" or not isinstance(entry, dict) \
                or not isinstance(entry.get("file"), str):
            return RecordingError(f"{path}: segment {index + 1}: not an entry with a file")
        where, owner, steps = f"{path}: {entry['file']}", entry, steps[2:]
    elif steps[:1] == ["source"]:
        return RecordingError(f"{path}: malformed manifest (source is not a string)")
    if not steps:
        return RecordingError(f"{path}: malformed manifest ({detail})")
    name, *inner = map(str, steps)
    wanted = _EXPECTS.get(name)
    if wanted is None:
        expected = _EXPECTED.match(detail)
        wanted = (f"expected {expected[1].replace('null', 'None')}" if expected
                  else detail[:1].lower() + detail[1:])
        if inner:  # inside the field's value: where in it
            wanted += f" in {name}" + "".join(f"[{step}]" for step in inner)
    return RecordingError(f"{where}: manifest field {name!r} is {owner.get(name)!r}, {wanted}")


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
