"""`manifest.json`: what a recording holds, segment by segment.

The manifest names the format and its version, the source, the lane count,
and per finished segment its event count, seq/id/receive-time/timestamp
ranges, size and sha256. `complete: true` marks a recording that was closed
cleanly. It is replaced atomically and durably on every change, and every
field is type-checked when it is read: a manifest is input like any other.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

import orjson

from harness.errors import RecordingError
from harness.files import write_atomically
from harness.recording.lanes import DEFAULT_LANES, LANE_RULE, MAX_LANES

__all__ = ["FORMAT", "MANIFEST", "VERSION", "Manifest", "Segment", "note_event", "utc_now"]

FORMAT: Final = "wikistream-recording"
VERSION: Final = 1
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
            raw = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            raise RecordingError(f"{path}: missing; not a recording") from None
        except orjson.JSONDecodeError as exc:
            raise RecordingError(f"{path}: not valid JSON ({exc})") from None
        except OSError as exc:
            raise RecordingError(f"{path}: cannot read ({exc.strerror})") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise RecordingError(f"{path}: not a {FORMAT} manifest")
        if raw.get("version") != VERSION:
            raise RecordingError(
                f"{path}: format version {raw.get('version')!r}, this harness reads {VERSION}")
        segments = raw.get("segments", [])
        if not isinstance(segments, list):
            raise RecordingError(f"{path}: malformed manifest (segments is not a list)")
        entries = []
        for index, entry in enumerate(segments):
            if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
                raise RecordingError(f"{path}: segment {index + 1}: not an entry with a file")
            entries.append(Segment(**_checked(entry, Segment, f"{path}: {entry['file']}")))
        top = {k: v for k, v in raw.items() if k != "segments"}
        if not isinstance(top.get("source"), str):
            raise RecordingError(f"{path}: malformed manifest (source is not a string)")
        manifest = cls(**_checked(top, Manifest, str(path)), segments=entries)
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


# The JSON types each annotation admits (bool is not an int here, an int is a float).
_ADMITS: Final[dict[str, tuple[type, ...]]] = {
    "str": (str,), "bool": (bool,), "int": (int,), "float": (int, float),
}


def _checked(raw: dict[str, Any], cls: type, where: str) -> dict[str, Any]:
    """The known fields of `raw`, each checked against `cls`'s annotation."""
    out: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in raw or f.name == "segments":
            continue
        value = raw[f.name]
        kind = str(f.type)
        if kind == "dict[str, int]":
            if not isinstance(value, dict) or not all(
                    isinstance(k, str) and type(v) is int for k, v in value.items()):
                raise RecordingError(f"{where}: manifest field {f.name!r} is {value!r},"
                                     " expected an object of whole numbers")
            out[f.name] = value
            continue
        optional = kind.endswith(" | None")
        admits = _ADMITS[kind.removesuffix(" | None")]
        ok = (value is None and optional) or (
            isinstance(value, admits) and (bool in admits or not isinstance(value, bool))
            and not (isinstance(value, float) and not math.isfinite(value)))
        if not ok:
            raise RecordingError(f"{where}: manifest field {f.name!r} is {value!r}, expected"
                                 f" {kind}")
        out[f.name] = float(value) if admits == _ADMITS["float"] and value is not None else value
    return out


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
