"""A recording in object storage, as `Recording` reads it: the manifest, whole segments
(checked against their sha256, for tools that read everything), and one lane's
frames by ranged GETs through the block index (each checked against its own
sha256), fetched ahead on a shared thread pool so that a replay rarely waits.
"""

from __future__ import annotations

import hashlib
import threading
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Final

from harness.errors import NoSuchObject, RecordingError
from harness.recording.index import Frame
from harness.recording.manifest import MANIFEST, Manifest, Segment
from harness.store.bucket import open_bucket
from harness.store.cache import FrameCache
from harness.store.location import BucketPath

__all__ = ["AHEAD_BYTES", "RemoteFiles"]

AHEAD_BYTES: Final = 16 << 20  # fetched ahead of a lane reader, at most
_AHEAD_REQUESTS: Final = 16
_FETCHERS: Final = 8


class RemoteFiles:
    """The objects of a recording at `where`."""

    def __init__(self, where: BucketPath) -> None:
        self.where = where
        self.bucket = open_bucket(where)
        self.cache = FrameCache.from_env()
        self._segment: tuple[str, bytes] | None = None  # the last whole segment read

    def url(self, name: str) -> str:
        return self.where.url(name)

    def manifest(self) -> Manifest:
        try:
            data = self.bucket.get_current(self.where.key(MANIFEST))
        except NoSuchObject:
            raise RecordingError(f"{self.url(MANIFEST)}: missing; not a recording"
                                 " (or not one yet: the manifest is uploaded last)") from None
        return Manifest.parse(data, self.url(MANIFEST))

    def segment(self, seg: Segment, *, checked: bool = True) -> bytes:
        """A whole segment, checked against the manifest's sha256. Unless `checked`
        (`verify` compares and reports it itself), one that does not match is returned,
        never kept."""
        if self._segment is not None and self._segment[0] == seg.file:
            return self._segment[1]
        digest = bytes.fromhex(seg.sha256) if seg.sha256 else None
        data = self.cache.get(digest) if self.cache and digest else None
        if data is None:
            data = self.bucket.get(self.where.key(seg.file))
            if digest is not None and hashlib.sha256(data).digest() != digest:
                if not checked:
                    return data
                raise RecordingError(f"{self.url(seg.file)}: sha256 does not match the manifest")
            if self.cache and digest:
                self.cache.put(digest, data)
        self._segment = (seg.file, data)
        return data

    def frames(self, wanted: Iterable[tuple[Frame, Sequence[Frame]]]
               ) -> Iterator[bytes | RecordingError]:
        """The bytes of each wanted frame, in order, fetched ahead. Each comes with the
        frames of its block: those of lanes this process also reads that sit next to it
        are fetched with it, in one GET, and kept for their lanes. A frame that does not
        match its sha256 comes as the `RecordingError` naming it, in its place."""
        ahead: deque[tuple[Frame, _Claim]] = deque()
        pending = iter(wanted)
        in_flight = 0
        exhausted = False
        while True:
            while not exhausted and len(ahead) < _AHEAD_REQUESTS and (
                    in_flight < AHEAD_BYTES or not ahead):
                got = next(pending, None)
                if got is None:
                    exhausted = True
                    break
                frame, block = got
                ahead.append((frame, self._claim(frame, block)))
                in_flight += frame.size
            if not ahead:
                return
            frame, claim = ahead.popleft()
            in_flight -= frame.size
            yield claim.result()

    def _claim(self, frame: Frame, block: Sequence[Frame]) -> _Claim:
        """A frame's bytes: kept from a neighbour's fetch, on their way in one, or fetched
        now together with the neighbours this process reads and nobody fetched yet."""
        shared, key = _shared, self._key(frame)
        with shared.lock:
            shared.claimed[(self.where.url(), frame.lane)] = (frame.segment, frame.offset)
            if key in shared.ready or key in shared.inflight:
                return _Claim(self, frame, key, shared.inflight.get(key))
            reading = shared.lanes[self.where.url()]
            at = block.index(frame)
            first = last = at
            room = _KEPT_BYTES - shared.kept
            while first > 0 and self._joins(block[first - 1], reading) and room > 0:
                first -= 1
                room -= block[first].size
            while last + 1 < len(block) and self._joins(block[last + 1], reading) and room > 0:
                last += 1
                room -= block[last].size
            span = block[first:last + 1]
            future = _pool().submit(self._fetch, span)
            for part in span:
                shared.inflight[self._key(part)] = future
        return _Claim(self, frame, key, future)

    def _key(self, frame: Frame) -> _Key:
        """A frame among those shared: where it is, and what it holds (a recording written
        again under the same address never serves an old frame)."""
        return self.where.url(frame.segment), frame.offset, frame.digest

    def _joins(self, neighbour: Frame, reading: set[int]) -> bool:
        """Whether to fetch `neighbour` too: its lane is read here, has not come past it
        yet, and nobody has fetched it."""
        key = self._key(neighbour)
        past = _shared.claimed.get((self.where.url(), neighbour.lane))
        return neighbour.lane in reading and key not in _shared.ready \
            and key not in _shared.inflight \
            and (past is None or past < (neighbour.segment, neighbour.offset))

    def _fetch(self, span: Sequence[Frame]) -> None:
        """Fetch adjacent frames with one GET (those not in the cache), check each, and
        keep them for their lanes."""
        found: dict[int, bytes | RecordingError] = {}
        missing = []
        for frame in span:
            cached = self.cache.get(frame.digest) if self.cache is not None else None
            if cached is not None:
                found[frame.offset] = cached
            else:
                missing.append(frame)
        try:
            for run in _runs(missing):
                data = self.bucket.get_range(self.where.key(run[0].segment), run[0].offset,
                                             run[-1].end - run[0].offset)
                for frame in run:
                    piece = data[frame.offset - run[0].offset:frame.end - run[0].offset]
                    if len(piece) != frame.size or \
                            hashlib.sha256(piece).digest() != frame.digest:
                        found[frame.offset] = RecordingError(
                            f"{self.url(frame.segment)}: byte {frame.offset}: frame does not"
                            " match its sha256 in the manifest's block index")
                        continue
                    found[frame.offset] = piece
                    if self.cache is not None:
                        self.cache.put(frame.digest, piece)
        finally:
            with _shared.lock:
                for frame in span:
                    key = self._key(frame)
                    _shared.inflight.pop(key, None)
                    if frame.offset in found:
                        got = found[frame.offset]
                        _shared.ready[key] = got
                        _shared.kept += len(got) if isinstance(got, bytes) else 0

    def _fetch_one(self, frame: Frame) -> bytes | RecordingError:
        """One frame, fetched now, on its own."""
        self._fetch([frame])
        return _Claim(self, frame, self._key(frame), None).result()

    def reads(self, lane: int) -> None:
        """Note that this process reads `lane` (its frames may come with a neighbour's)."""
        with _shared.lock:
            _shared.lanes[self.where.url()].add(lane)


_Key = tuple[str, int, bytes]  # segment object, offset, sha256


class _Shared:
    """What this process's lane readers share: which lanes it reads, per recording; frames
    fetched for a lane that has not come for them yet; fetches under way."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lanes: defaultdict[str, set[int]] = defaultdict(set)
        self.ready: dict[_Key, bytes | RecordingError] = {}
        self.inflight: dict[_Key, Future[None]] = {}
        self.kept = 0  # bytes in `ready`
        # How far each lane's reader has claimed (segment names sort in file order).
        self.claimed: dict[tuple[str, int], tuple[str, int]] = {}


_shared = _Shared()
_KEPT_BYTES: Final = 64 << 20  # frames kept for other lanes, at most: then fetched alone


class _Claim:
    """A frame's bytes once the fetch that brings them is done."""

    def __init__(self, files: RemoteFiles, frame: Frame, key: _Key,
                 future: Future[None] | None) -> None:
        self.files, self.frame, self.key, self.future = files, frame, key, future

    def result(self) -> bytes | RecordingError:
        if self.future is not None:
            self.future.result()  # raises what the fetch raised (the store unavailable, ...)
        with _shared.lock:
            piece = _shared.ready.pop(self.key, None)
            if isinstance(piece, bytes):
                _shared.kept -= len(piece)
        if piece is None:  # another reader of the same lane in this process took it
            return self.files._fetch_one(self.frame)
        return piece


def _runs(frames: Sequence[Frame]) -> list[list[Frame]]:
    """`frames` (in file order) in runs of byte-adjacent ones."""
    runs: list[list[Frame]] = []
    for frame in frames:
        if runs and runs[-1][-1].end == frame.offset:
            runs[-1].append(frame)
        else:
            runs.append([frame])
    return runs


_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """The process's fetching threads (obstore releases the GIL while they wait)."""
    global _executor
    if _executor is None:
        with _lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(_FETCHERS, thread_name_prefix="harness-fetch")
    return _executor
