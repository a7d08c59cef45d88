"""Lanes derived by key: a recording re-sharded so that each partition reads only the
events of its own keys, on the worker that Bytewax routes those keys to.

A recording is written in lanes by `user`. A flow keyed by anything else
(`wiki`, `meta.domain`, an integer field) needs every event of one key in
one partition, in recording order, and wants that partition read on the
worker its keyed steps run the key on. Deriving reads the recording once,
in arrival order, and writes every line exactly as it is into lane
`route_lane(key text, lanes)` of a new recording in the same verified format
(`harness.source.derive`, which says how). Damage found in the recording is
reported by lane 0.

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
import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Final

import orjson

from harness.errors import HarnessError, RecordingError, UsageError
from harness.files import harness_cache
from harness.recording.integrity import SegmentCheck
from harness.recording.reader import Recording
from harness.source.derive import DERIVED, FORMAT, KeyLanes, build_lanes, derived_digest
from harness.source.keys import KeyGetter, key_path

__all__ = ["FORMAT", "MAX_LANES", "KeyLanes", "beside_the_run", "cache_root", "check_lanes",
           "discard", "key_lanes"]

MAX_LANES: Final = 65535
_MAX_CACHE_BYTES: Final = int(float(os.environ.get("HARNESS_CACHE_MAX_GB", "20")) * (1 << 30))


def check_lanes(lanes: int) -> None:
    """Refuse a lane (partition) count out of 1..65535."""
    if not 1 <= lanes <= MAX_LANES:
        raise UsageError(f"partitions must be 1..{MAX_LANES}, got {lanes}")


def cache_root() -> Path:
    """Where derived lanes are kept: `HARNESS_CACHE_DIR`, else the user's cache."""
    return harness_cache("lanes")


def key_lanes(recording: Recording, key: str | KeyGetter, lanes: int, *,
              progress: bool | None = False) -> KeyLanes:
    """The lanes of `recording` by `key`, derived now or found in the cache.

    A key that is a function is derived for this process only (it has no name
    to be found by). Damage in the recording raises `RecordingError` naming
    the first place, unless the recording was opened with `skip_damaged`.
    """
    check_lanes(lanes)
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
            fd = _open_lock(root, name)
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
                    found = build_lanes(recording, key, lanes, fingerprint, entry, progress)
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
        if recording.remote is not None:  # objects: replaced, never changed in place
            out.append(f"{recording.location}/{segment.file}:{segment.sha256}:{segment.bytes}")
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
        if raw.get("check") != derived_digest(raw["events"], raw["damage"], entry):
            return None  # altered since it was written
        events = tuple(int(n) for n in raw["events"])
        damage = tuple(tuple((str(where), int(lines)) for where, lines in segment)
                       for segment in raw["damage"])
    except (KeyError, TypeError, ValueError, OSError):
        return None
    if len(events) != len(fingerprint) or len(damage) != len(fingerprint):
        return None
    return KeyLanes(entry, key, lanes, events, damage)


def _open_lock(root: Path, name: str) -> int:
    """A descriptor of the lock file of cache entry `name`, to `flock`."""
    return os.open(root / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)


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
            fd = _open_lock(root, entry.name)
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
    memo = (key, lanes, recording.identity)
    cached = _private_lanes.get(memo)
    if cached is not None:
        return cached
    work = Path(tempfile.mkdtemp(prefix="harness-lanes-"))
    atexit.register(shutil.rmtree, work, True)
    found = build_lanes(recording, key, lanes, _fingerprint(recording), work / "lanes", progress)
    _private_lanes[memo] = found
    return found


_private_lanes: dict[tuple[KeyGetter, int, str], KeyLanes] = {}


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

