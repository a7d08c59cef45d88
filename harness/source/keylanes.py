"""Lanes derived by key: a recording re-sharded so that each partition reads only the
events of its own keys, on the worker that Bytewax routes those keys to.

A recording is written in lanes by `user`. A flow keyed by anything else
(`wiki`, `meta.domain`, an integer field) needs every event of one key in
one partition, in recording order, and wants that partition read on the
worker its keyed steps run the key on. Deriving reads the recording once,
in arrival order, and writes every line exactly as it is into lane
`route_lane(key text, lanes)` of a new recording in the same verified format
(zstd blocks, a manifest with each segment's sha256). Events the source will
not pass on (not JSON, not an object, no key) go to lane `seq % lanes`, so
that exactly one partition counts each. There is one derived segment per
recorded segment, with the same time range, so a slice skips the same
segments; damage found in the recording is kept in `derived.json`, by
segment, and reported by lane 0.

Derived lanes live in a cache directory (`HARNESS_CACHE_DIR`, default
`~/.cache/wikistream-harness/lanes`), named by the recording's segment
digests, the key, the lane count and `FORMAT`: they are reused while all of
these match and derived anew when any changes. A derivation is built aside
and renamed into place under a lock (two runs never both build one); before
use its files are checked against its manifest, and their sha256 beside the
run (`harness.recording.integrity`). A derived recording that does not
match is removed and never read as the recording's events.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec
import orjson
import zstandard
from msgspec import UNSET, UnsetType

from harness.errors import HarnessError, RecordingError, UsageError
from harness.progress import Progress
from harness.recording.blocks import Block, Damage
from harness.recording.envelope import Envelope, EnvelopeError
from harness.recording.integrity import SegmentCheck
from harness.recording.keyroute import ROUTE_RULE, route_lane
from harness.recording.manifest import MANIFEST
from harness.recording.reader import Recording
from harness.recording.writer import RecordingWriter
from harness.source.keys import KeyGetter, key_getter, key_path, key_text

__all__ = ["FORMAT", "KeyLanes", "beside_the_run", "cache_root", "discard", "key_lanes"]

FORMAT: Final = 1  # of derived lanes: bump when the rule or the layout changes
DERIVED: Final = "derived.json"
FRAME_EVENTS: Final = 256  # events per lane frame (about): see PAYLOAD_CHUNK_BYTES
LEVEL: Final = -1000  # zstd level: stored, barely compressed: a cache read on every replay
_MAX_CACHE_BYTES: Final = int(float(os.environ.get("HARNESS_CACHE_MAX_GB", "20")) * (1 << 30))


def cache_root() -> Path:
    """Where derived lanes are kept: `HARNESS_CACHE_DIR`, else the user's cache."""
    configured = os.environ.get("HARNESS_CACHE_DIR")
    if configured:
        return Path(configured) / "lanes"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wikistream-harness" / "lanes"


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


def key_lanes(recording: Recording, key: str | KeyGetter, lanes: int, *,
              progress: bool | None = False) -> KeyLanes:
    """The lanes of `recording` by `key`, derived now or found in the cache.

    A key that is a function is derived for this process only (it has no name
    to be found by). Damage in the recording raises `RecordingError` naming
    the first place, unless the recording was opened with `skip_damaged`.
    """
    if not 1 <= lanes <= 65535:
        raise UsageError(f"partitions must be 1..65535, got {lanes}")
    if callable(key):
        found = _private(recording, key, lanes, progress)
    else:
        key_path(key)  # validates
        found = _cached(recording, key, lanes, progress)
    if not recording.skip_damaged:
        for where, _ in (d for segment in found.damage for d in segment):
            raise RecordingError(where)
    return found


# -- the cache ---------------------------------------------------------------------------

_held: dict[Path, int] = {}  # entry -> descriptor of its lock, held shared while in use
_held_lock = threading.Lock()


def _cached(recording: Recording, key: str, lanes: int, progress: bool | None) -> KeyLanes:
    fingerprint = _fingerprint(recording)
    name = hashlib.sha256(orjson.dumps({"format": FORMAT, "key": key, "lanes": lanes,
                                        "segments": fingerprint})).hexdigest()[:32]
    root = cache_root()
    entry = root / name
    with _held_lock:  # worker threads of one process ask at once: one derives
        if entry in _held:
            found = _load(entry, key, lanes, fingerprint)
            if found is not None:
                return found
            os.close(_held.pop(entry))  # found wanting: let go before deriving anew
        try:
            root.mkdir(parents=True, exist_ok=True)
            fd = os.open(root / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise HarnessError(f"{root}: cannot keep derived lanes there ({exc.strerror});"
                               " set HARNESS_CACHE_DIR to a writable directory") from None
        try:
            # Shared while in use (by this run's members too); exclusive only to build,
            # which waits for a run still using a derivation found wanting.
            fcntl.flock(fd, fcntl.LOCK_SH)
            found = _load(entry, key, lanes, fingerprint)
            if found is None:
                fcntl.flock(fd, fcntl.LOCK_UN)
                fcntl.flock(fd, fcntl.LOCK_EX)
                found = _load(entry, key, lanes, fingerprint)  # another run built it
                if found is None:
                    shutil.rmtree(entry, ignore_errors=True)  # stale, cut short or altered
                    found = _build(recording, key, lanes, fingerprint, entry, progress)
                    _evict(root, keep=entry)
                fcntl.flock(fd, fcntl.LOCK_SH)
            os.utime(entry / DERIVED)  # most recently used
        except BaseException:
            os.close(fd)
            raise
        _held[entry] = fd
        return found


def discard(lanes: KeyLanes) -> None:
    """Remove derived lanes found damaged, so that the next run derives them anew."""
    shutil.rmtree(lanes.directory, ignore_errors=True)


def _fingerprint(recording: Recording) -> list[str]:
    """What the derived lanes depend on: each segment's sha256 as the manifest lists it,
    and its file's size and modification time (a file damaged or replaced since it
    was listed, or one still being written, is derived anew)."""
    out = []
    for index, segment in enumerate(recording.manifest.segments):
        if index in recording.missing:
            out.append(f"{segment.file}:missing")
            continue
        stat = recording.segment_path(index).stat()
        out.append(f"{segment.file}:{segment.sha256}:{stat.st_size}:{stat.st_mtime_ns}")
    return out


def _load(entry: Path, key: str, lanes: int, fingerprint: list[str]) -> KeyLanes | None:
    """The derived lanes in `entry` if they are complete and what is wanted; else None."""
    try:
        raw = orjson.loads((entry / DERIVED).read_bytes())
        recording = Recording(entry)
    except (OSError, orjson.JSONDecodeError, HarnessError):
        return None
    wanted = {"format": FORMAT, "key": key, "lanes": lanes, "segments": fingerprint}
    if not isinstance(raw, dict) or any(raw.get(k) != v for k, v in wanted.items()):
        return None
    manifest = recording.manifest
    if not manifest.complete or len(manifest.segments) != len(fingerprint):
        return None
    for index, segment in enumerate(manifest.segments):
        try:
            if recording.segment_path(index).stat().st_size != segment.bytes:
                return None
        except OSError:
            return None
    try:
        if raw.get("check") != _check(raw["events"], raw["damage"], entry):
            return None  # altered since it was written
        events = tuple(int(n) for n in raw["events"])
        damage = tuple(tuple((str(where), int(lines)) for where, lines in segment)
                       for segment in raw["damage"])
    except (KeyError, TypeError, ValueError, OSError):
        return None
    if len(events) != len(fingerprint) or len(damage) != len(fingerprint):
        return None
    return KeyLanes(entry, key, lanes, events, damage)


def _check(events: Any, damage: Any, directory: Path) -> str:
    """A digest of what `derived.json` says beside the manifest it goes with."""
    return hashlib.sha256(orjson.dumps([events, damage]) + (directory / MANIFEST).read_bytes()
                          ).hexdigest()


def _evict(root: Path, keep: Path) -> None:
    """Remove the least recently used derivations while the cache is over its bound;
    one in use (its lock held) stays."""
    entries = []
    for derived in root.glob(f"*/{DERIVED}"):
        entry = derived.parent
        with contextlib.suppress(OSError):
            size = sum(f.stat().st_size for f in entry.iterdir())
            entries.append((derived.stat().st_mtime, entry, size))
    total = sum(size for _, _, size in entries)
    for _, entry, size in sorted(entries):
        if total <= _MAX_CACHE_BYTES:
            break
        if entry == keep:
            continue
        try:
            fd = os.open(root / f"{entry.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        shutil.rmtree(entry, ignore_errors=True)
        os.close(fd)
        total -= size


def _private(recording: Recording, key: KeyGetter, lanes: int,
             progress: bool | None) -> KeyLanes:
    """Lanes by a key function, in a directory of this process's that goes with it."""
    memo = (key, lanes, str(recording.directory))
    cached = _private_lanes.get(memo)
    if cached is not None:
        return cached
    work = Path(tempfile.mkdtemp(prefix="harness-lanes-"))
    atexit.register(shutil.rmtree, work, True)
    found = _build(recording, key, lanes, _fingerprint(recording), work / "lanes", progress)
    _private_lanes[memo] = found
    return found


_private_lanes: dict[tuple[KeyGetter, int, str], KeyLanes] = {}


# -- deriving ----------------------------------------------------------------------------

def _build(recording: Recording, key: str | KeyGetter, lanes: int, fingerprint: list[str],
           entry: Path, progress: bool | None) -> KeyLanes:
    """Derive into a new directory beside `entry`, then rename it into place."""
    label = key if isinstance(key, str) else getattr(key, "__qualname__", "key")
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    meter = Progress(f"deriving lanes by {label}", recording.manifest.events,
                     enabled=progress)
    try:
        source = Recording(recording.directory, skip_damaged=True,
                           max_frame_bytes=recording.max_frame_bytes)
        target = staging / "lanes"
        events, damage = _derive(source, key, lanes, target, meter)
        (target / DERIVED).write_bytes(orjson.dumps({
            "format": FORMAT, "key": label, "lanes": lanes, "rule": ROUTE_RULE,
            "segments": fingerprint, "events": events, "damage": damage,
            "check": _check(events, damage, target)}))
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
        self.label = key if isinstance(key, str) else "key"
        self._get = key_getter(key)
        self._fast = _key_decoder(tuple(key.split("."))) if isinstance(key, str) else None
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
                where = f"{block.segment}: block at byte {block.offset}: lane {lane}"
                self._slow_frame(lines, where, out, damage)
        out.sort(key=_seq)
        return out

    def _fast_frame(self, data: bytes, lines: list[bytes],
                    out: list[tuple[int, str | None, float, bytes, int]]) -> bool:
        if self._fast is None:
            return False
        try:
            envelopes = self._fast(data)
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            return False
        if len(envelopes) != len(lines):  # a blank line: damage, judged line by line
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

    @functools.cached_property
    def _depth(self) -> range:
        return range(len(self.label.split(".")))

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


def beside_the_run(lanes: KeyLanes) -> SegmentCheck:
    """The sha256 of every derived segment checked beside the run, which fails if one
    does not match (the lanes are then removed, to be derived anew)."""
    recording = lanes.recording
    work = tuple((str(recording.segment_path(i)), str(s.sha256))
                 for i, s in enumerate(recording.manifest.segments))

    def mismatch(path: str) -> RecordingError:
        discard(lanes)
        return RecordingError(f"{path}: lanes derived by {lanes.key} do not match their"
                              " manifest (damaged or altered since they were derived);"
                              " removed them: run again to derive them anew")

    return SegmentCheck.of_files(work, mismatch)

