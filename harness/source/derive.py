"""Deriving lanes by a key: a recording read once, in arrival order, and every line
written exactly as it is into the lane of its key (`KeyLanes`).

A line goes to lane `route_lane(key text, lanes)` of a new recording in the
same verified format (zstd blocks, a manifest with each segment's sha256);
an event the source will not pass on (not JSON, not an object, no key) to
lane `seq % lanes`, so that exactly one partition counts it. There is one
derived segment per recorded segment, with the same time range, so a slice
skips the same segments; damage found in the recording is kept in
`derived.json`, by segment. Where derived lanes are kept and found again is
`harness.source.keylanes`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec
import orjson
import zstandard
from msgspec import UNSET, UnsetType

from harness.errors import HarnessError
from harness.progress import Progress
from harness.recording.blocks import Block, Damage
from harness.recording.envelope import Envelope, EnvelopeError
from harness.recording.keyroute import ROUTE_RULE, route_lane
from harness.recording.manifest import MANIFEST
from harness.recording.reader import Recording
from harness.recording.writer import RecordingWriter
from harness.source.keys import KeyGetter, key_getter, key_name, key_path, key_text
from harness.source.lanes import frame_place
from harness.source.payloads import decode_at_once

__all__ = ["DERIVED", "FORMAT", "KeyLanes", "build_lanes", "derived_digest"]

FORMAT: Final = 1  # of derived lanes: bump when the rule or the layout changes
DERIVED: Final = "derived.json"
FRAME_EVENTS: Final = 256  # events per lane frame (about): see PAYLOAD_CHUNK_BYTES
LEVEL: Final = -1000  # zstd level: stored, barely compressed: a cache read on every replay


@dataclass(frozen=True)
class KeyLanes:
    """A recording's events in `lanes` lanes by `key`, kept in `directory`.

    `events[i]` is how many events recorded segment `i` holds (what a slice
    that skips the segment counts as outside); `damage[i]` the damage found in
    it, as `(where, lines)`.
    """

    directory: Path
    key: str
    lanes: int
    events: tuple[int, ...]
    damage: tuple[tuple[tuple[str, int], ...], ...]

    @property
    def recording(self) -> Recording:
        return Recording(self.directory)  # strict: damage here is never the recording's


def derived_digest(events: Any, damage: Any, directory: Path) -> str:
    """A digest of what `derived.json` says beside the manifest it goes with."""
    return hashlib.sha256(orjson.dumps([events, damage]) + (directory / MANIFEST).read_bytes()
                          ).hexdigest()


def build_lanes(recording: Recording, key: str | KeyGetter, lanes: int,
                fingerprint: list[str], entry: Path, progress: bool | None) -> KeyLanes:
    """Derive into a new directory beside `entry`, then rename it into place."""
    label = key if isinstance(key, str) else getattr(key, "__qualname__", "key")
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    meter = Progress(f"deriving lanes by {label}", recording.manifest.events,
                     enabled=progress)
    try:
        source = Recording(recording.location, skip_damaged=True,
                           max_frame_bytes=recording.max_frame_bytes)
        target = staging / "lanes"
        events, damage = _derive(source, key, lanes, target, meter)
        (target / DERIVED).write_bytes(orjson.dumps({
            "format": FORMAT, "key": label, "lanes": lanes, "rule": ROUTE_RULE,
            "segments": fingerprint, "events": events, "damage": damage,
            "check": derived_digest(events, damage, target)}))
        os.rename(target, entry)
    except OSError as exc:
        raise HarnessError(f"{entry.parent}: cannot write derived lanes"
                           f" ({exc.strerror or exc}); free space or set HARNESS_CACHE_DIR"
                           ) from None
    finally:
        meter.done()
        shutil.rmtree(staging, ignore_errors=True)
    return KeyLanes(entry, label, lanes, tuple(events),
                    tuple(tuple((w, n) for w, n in d) for d in damage))


def _derive(source: Recording, key: str | KeyGetter, lanes: int, target: Path,
            meter: Progress) -> tuple[list[int], list[list[tuple[str, int]]]]:
    sorter = _LineSorter(key, lanes)
    dctx = zstandard.ZstdDecompressor()
    events: list[int] = []
    damage: list[list[tuple[str, int]]] = []
    done = 0
    with RecordingWriter(target, source=f"derived:{sorter.label}", lanes=lanes,
                         block_events=FRAME_EVENTS * lanes, flush_interval=float("inf"),
                         segment_bytes=1 << 62, level=LEVEL) as writer:
        writer.manifest.lane_key = f"{sorter.label}: {ROUTE_RULE}; no key: seq % lanes"
        for index, segment in enumerate(source.manifest.segments):
            found: list[tuple[str, int]] = []
            for item in source.segment_blocks(index):
                if isinstance(item, Damage):
                    found.append((item.where, item.lines))
                    continue
                for seq, sse_id, recv, line, lane in sorter.block(source, item, dctx, found):
                    writer.append_line(seq, sse_id, recv, line, None, lane)
                done += item.header.events
                meter.update(done)
            writer.end_segment()
            derived = writer.manifest.segments[-1]
            derived.min_timestamp, derived.max_timestamp = (segment.min_timestamp,
                                                            segment.max_timestamp)
            events.append(segment.events)
            damage.append(found)
    return events, damage


class _LineSorter:
    """Which lane each line of a block goes to, in arrival (seq) order.

    The common line is decoded with msgspec into the envelope and the key's
    fields only; a frame with anything unusual (a payload that is not an
    object, an intermediate field that is not an object) is decoded line by
    line with `Envelope.decode`, as the source itself reads it.
    """

    def __init__(self, key: str | KeyGetter, lanes: int) -> None:
        self.lanes = lanes
        self.label = key_name(key)
        self._get = key_getter(key)
        path = key_path(key) if isinstance(key, str) else []
        self._fast = _key_decoder(tuple(path)) if path else None
        self._depth = range(len(path))  # the key's fields, one struct `f` each
        self._routes: dict[str, int] = {}

    def lane_of(self, text: str | None, seq: int) -> int:
        if text is None:
            return seq % self.lanes
        lane = self._routes.get(text)
        if lane is None:
            lane = self._routes[text] = route_lane(text, self.lanes)
        return lane

    def block(self, source: Recording, block: Block, dctx: zstandard.ZstdDecompressor,
              damage: list[tuple[str, int]]) -> list[tuple[int, str | None, float, bytes, int]]:
        out: list[tuple[int, str | None, float, bytes, int]] = []
        for lane, data in source.read_frames(block, None, dctx):
            if isinstance(data, Damage):
                damage.append((data.where, data.lines))
                continue
            lines = data.splitlines()
            if not self._fast_frame(data, lines, out):
                self._slow_frame(lines, frame_place(block, lane), out, damage)
        out.sort(key=_seq)
        return out

    def _fast_frame(self, data: bytes, lines: list[bytes],
                    out: list[tuple[int, str | None, float, bytes, int]]) -> bool:
        if self._fast is None:
            return False
        envelopes = decode_at_once(self._fast, data, len(lines))
        if envelopes is None:  # judged line by line
            return False
        lane_of, rows = self.lane_of, []
        for env, line in zip(envelopes, lines, strict=True):
            value: Any = env.data
            if value is UNSET:
                if env.raw is None or env.error is None:
                    return False  # not an envelope: damage, judged line by line
                text = None
            else:
                for _ in self._depth:
                    value = value.f if value is not None else None
                text = key_text(value)
            rows.append((env.seq, env.id, env.recv, line, lane_of(text, env.seq)))
        out.extend(rows)
        return True

    def _slow_frame(self, lines: list[bytes], where: str,
                    out: list[tuple[int, str | None, float, bytes, int]],
                    damage: list[tuple[str, int]]) -> None:
        for number, line in enumerate(lines, start=1):
            try:
                env = Envelope.decode(line)
            except EnvelopeError as exc:
                damage.append((f"{where} line {number}: {exc}", 1))
                continue
            data = env.data
            text = key_text(self._get(data)) if env.is_json and isinstance(data, dict) else None
            out.append((env.seq, env.id, env.recv, line, self.lane_of(text, env.seq)))


def _seq(row: tuple[int, str | None, float, bytes, int]) -> int:
    return row[0]


class _Keyed(msgspec.Struct):
    seq: int
    recv: float
    id: str | None = None
    data: Any = UNSET
    error: str | None = None
    raw: str | None = None


@functools.cache
def _key_decoder(path: tuple[str, ...]) -> Callable[[bytes], list[Any]]:
    """A decoder of envelope lines that materialises only the key's fields: each level
    of `path` a struct with one field `f` (renamed to the JSON name)."""
    leaf: Any = Any
    for depth, name in enumerate(reversed(path)):
        inner = msgspec.defstruct(f"_Key{depth}", [("f", leaf, None)], rename={"f": name})
        leaf = inner | None if depth < len(path) - 1 else inner
    envelope = msgspec.defstruct("_KeyedEnvelope", [("data", leaf | UnsetType, UNSET)],
                                 bases=(_Keyed,))
    return msgspec.json.Decoder(envelope).decode_lines
