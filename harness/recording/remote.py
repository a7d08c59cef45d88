"""A recording in object storage, as `Recording` reads it: the manifest, whole segments
(checked against their sha256, for tools that read everything), and one lane's
frames by ranged GETs through the block index (each checked against its own
sha256), fetched ahead on a shared thread pool so that a replay rarely waits.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

from harness.errors import RecordingError, StoreError
from harness.recording.manifest import MANIFEST, Manifest, Segment
from harness.store.bucket import open_bucket
from harness.store.cache import FrameCache
from harness.store.location import BucketPath

__all__ = ["AHEAD_BYTES", "Frame", "RemoteFiles"]

AHEAD_BYTES: Final = 16 << 20  # fetched ahead of a lane reader, at most
_AHEAD_REQUESTS: Final = 16
_FETCHERS: Final = 16


@dataclass(frozen=True, slots=True)
class Frame:
    """One byte range of a segment object and the sha256 it must have."""

    segment: str
    offset: int
    size: int
    digest: bytes


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
        except StoreError as exc:
            if isinstance(exc.__cause__, FileNotFoundError) or "no such object" in str(exc):
                raise RecordingError(f"{self.url(MANIFEST)}: missing; not a recording"
                                     " (or not one yet: the manifest is uploaded last)"
                                     ) from None
            raise
        return Manifest.parse(data, self.url(MANIFEST))

    def segment(self, seg: Segment, *, checked: bool = True) -> bytes:
        """A whole segment, checked against the manifest's sha256 (unless not `checked`:
        `verify` compares and reports it itself)."""
        if self._segment is not None and self._segment[0] == seg.file:
            return self._segment[1]
        digest = bytes.fromhex(seg.sha256) if seg.sha256 and checked else None
        data = self.cache.get(digest) if self.cache and digest else None
        if data is None:
            data = self.bucket.get(self.where.key(seg.file))
            if digest is not None and hashlib.sha256(data).digest() != digest:
                raise RecordingError(f"{self.url(seg.file)}: sha256 does not match the manifest")
            if self.cache and digest:
                self.cache.put(digest, data)
        if digest is not None or not seg.sha256:
            self._segment = (seg.file, data)
        return data

    def frames(self, wanted: Iterable[Frame]) -> Iterator[bytes | RecordingError]:
        """The bytes of each frame, in order, fetched ahead; a frame that does not match
        its sha256 comes as the `RecordingError` naming it, in its place."""
        ahead: deque[tuple[Frame, Future[bytes | RecordingError]]] = deque()
        pending = iter(wanted)
        in_flight = 0
        exhausted = False
        try:
            while True:
                while not exhausted and len(ahead) < _AHEAD_REQUESTS and (
                        in_flight < AHEAD_BYTES or not ahead):
                    frame = next(pending, None)
                    if frame is None:
                        exhausted = True
                        break
                    ahead.append((frame, _pool().submit(self._fetch, frame)))
                    in_flight += frame.size
                if not ahead:
                    return
                frame, future = ahead.popleft()
                in_flight -= frame.size
                yield future.result()
        finally:
            for _, future in ahead:
                future.cancel()

    def _fetch(self, frame: Frame) -> bytes | RecordingError:
        if self.cache is not None:
            cached = self.cache.get(frame.digest)
            if cached is not None:
                return cached
        data = self.bucket.get_range(self.where.key(frame.segment), frame.offset, frame.size)
        if len(data) != frame.size or hashlib.sha256(data).digest() != frame.digest:
            return RecordingError(f"{self.url(frame.segment)}: byte {frame.offset}: frame does"
                                  " not match its sha256 in the manifest's block index")
        if self.cache is not None:
            self.cache.put(frame.digest, data)
        return data


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
