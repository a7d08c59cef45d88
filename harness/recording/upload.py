"""Writing a recording to object storage: `Upload`, and `open_writer` for either place.

The recording is written as on disk, into a local staging directory (one per
`s3://` address, under the harness cache), and published as it goes: each
segment once it is finished, then the manifest listing only finished
segments. The manifest is the commit point: a reader never sees a segment
the manifest does not list, so a recorder killed mid-upload leaves the
last committed recording, which the next recorder resumes without loss or
duplicates: from its staging directory if it is still there, otherwise
from the bucket itself.

A recorder holds the prefix through a lock object (`.harness-lock`) created
only if absent and renewed while it records; a second recorder is refused
while the lock is fresh. A lock whose holder is gone (a dead process on this
host, or no renewal for `LEASE_SECONDS`) is taken over, by a conditional
put that only one contender can win. Each manifest put is conditional on the
version this recorder last wrote, so even two recorders that both believed
they held the lock could not both commit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Final

import orjson

from harness.errors import RecordingError, StoreError, StoreUnavailable
from harness.files import alive, harness_cache
from harness.recording.compact import COMPACT_BYTES
from harness.recording.lanes import DEFAULT_LANES
from harness.recording.manifest import MANIFEST, Manifest
from harness.recording.remote import RemoteFiles
from harness.recording.writer import RecordingWriter
from harness.store.bucket import Conflict
from harness.store.location import BucketPath, location

__all__ = ["LEASE_SECONDS", "LOCK", "Upload", "open_writer", "staging_for"]

LOCK: Final = ".harness-lock"
LEASE_SECONDS: Final = float(os.environ.get("HARNESS_S3_LEASE_SECONDS", "60"))
_RENEW_SECONDS: Final = LEASE_SECONDS / 3


class Upload:
    """Publishes the recording being written in `staging` to `where`."""

    def __init__(self, where: BucketPath) -> None:
        self.where = where
        self.files = RemoteFiles(where)
        self.bucket = self.files.bucket
        self._lock_tag: str | None = None
        self._renewed = 0.0
        self._manifest_tag: str | None = None
        self._published: set[str] = set()
        self._finished: Path | None = None  # staging of a recording committed complete

    # -- the lock -----------------------------------------------------------------

    def claim(self) -> None:
        """Hold the prefix, or refuse with one line naming who holds it."""
        key = self.where.key(LOCK)
        body = self._lock_body()
        try:
            self._lock_tag = self.bucket.put(key, body, create=True)
        except Conflict:
            pass
        else:
            self._renewed = time.monotonic()
            return
        held = self.bucket.etag(key)
        holder = self._holder(key)
        if held is None or holder is None or not self._stale(holder):
            who = (f"{holder.get('host')} pid {holder.get('pid')}" if holder else "another run")
            raise StoreError(f"{self.where}: being recorded by {who} (lock {LOCK});"
                             " refusing to write to it too")
        try:  # its holder is gone: take it over; of two contenders only one wins
            self._lock_tag = self.bucket.put(key, body, if_match=held)
        except Conflict:
            raise StoreError(f"{self.where}: another recorder took it over just now;"
                             " refusing to write to it too") from None
        self._renewed = time.monotonic()

    def renew(self) -> None:
        """Keep the lock fresh (call often; it writes every `_RENEW_SECONDS`)."""
        if self._lock_tag is None or time.monotonic() - self._renewed < _RENEW_SECONDS:
            return
        try:
            self._lock_tag = self.bucket.put(self.where.key(LOCK), self._lock_body(),
                                             if_match=self._lock_tag)
        except Conflict:
            raise StoreError(f"{self.where}: another recorder took the lock over;"
                             " stopped writing") from None
        self._renewed = time.monotonic()

    def release(self) -> None:
        """Let the prefix go (best effort: a lock left behind goes stale and is taken
        over by the next recorder)."""
        if self._lock_tag is not None:
            self._lock_tag = None
            with contextlib.suppress(StoreError, StoreUnavailable):
                self.bucket.delete(self.where.key(LOCK))
        if self._finished is not None:  # all of it is in the bucket now
            shutil.rmtree(self._finished, ignore_errors=True)

    def _lock_body(self) -> bytes:
        return orjson.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                             "renewed": time.time()})

    def _holder(self, key: str) -> dict[str, Any] | None:
        try:
            holder = orjson.loads(self.bucket.get(key))
        except (StoreError, orjson.JSONDecodeError):
            return None
        return holder if isinstance(holder, dict) else None

    @staticmethod
    def _stale(holder: dict[str, Any]) -> bool:
        renewed = holder.get("renewed")
        if not isinstance(renewed, (int, float)) or time.time() - renewed > LEASE_SECONDS:
            return True
        pid = holder.get("pid")
        return holder.get("host") == socket.gethostname() and isinstance(pid, int) \
            and not alive(pid)

    # -- publishing ---------------------------------------------------------------

    def restore(self, staging: Path) -> bool:
        """Make `staging` hold what the bucket committed, if the bucket holds a recording
        that staging lacks (resuming on another machine); whether there is one to resume."""
        committed = self._committed()
        if (staging / MANIFEST).is_file():
            if committed is not None:
                self._published = {s.file for s in committed.segments}
            return True
        if committed is None:
            return False
        if committed.complete:
            raise RecordingError(f"{self.where}: recording is complete; refusing to append"
                                 " to it (record into a new prefix)")
        staging.mkdir(parents=True, exist_ok=True)
        for segment in committed.segments:
            (staging / segment.file).write_bytes(self.files.segment(segment))
            self._published.add(segment.file)
        committed.save(staging)
        return True

    def _committed(self) -> Manifest | None:
        """The manifest the bucket holds, and its version (the condition of the next
        put), None if there is none."""
        self._manifest_tag = self.bucket.etag(self.where.key(MANIFEST))
        return self.files.manifest() if self._manifest_tag is not None else None

    def publish(self, staging: Path, manifest: Manifest) -> None:
        """Upload every finished segment not yet published, then the manifest of the
        finished ones: the commit point."""
        self.renew()
        for segment in manifest.segments:
            if segment.complete and segment.file not in self._published:
                self.bucket.upload(self.where.key(segment.file), staging / segment.file)
                self._published.add(segment.file)
        committed = dataclasses.replace(
            manifest, segments=[s for s in manifest.segments if s.complete])
        key = self.where.key(MANIFEST)
        try:
            self._manifest_tag = self.bucket.put(
                key, committed.to_json(), create=self._manifest_tag is None,
                if_match=self._manifest_tag)
        except Conflict:
            raise StoreError(f"{self.where.url(MANIFEST)}: changed by someone else while"
                             " this recorder held the lock; stopped writing") from None
        if committed.complete:
            self._finished = staging


def staging_for(where: BucketPath) -> Path:
    """The local directory a recording bound for `where` is written in first."""
    name = hashlib.sha256(str(where).encode()).hexdigest()[:16]
    return harness_cache("uploads") / f"{where.bucket}-{where.name}-{name}"


def open_writer(out: str | os.PathLike[str] | BucketPath, *, source: str,
                lanes: int = DEFAULT_LANES, segment_seconds: float | None = None,
                fresh: bool = False) -> RecordingWriter:
    """A writer for `out`, a directory or `s3://bucket/prefix`, resuming an unfinished
    recording there unless `fresh` (a complete one, or any other non-empty directory,
    is refused)."""
    where = location(out)
    if isinstance(where, Path):
        return RecordingWriter(where, source=source, lanes=lanes,
                               resume=not fresh and (where / MANIFEST).is_file(),
                               segment_seconds=segment_seconds)
    upload = Upload(where)
    upload.claim()
    try:
        staging = staging_for(where)
        resume = upload.restore(staging)
        if fresh and resume:
            raise RecordingError(f"{where}: already holds a recording; refusing to"
                                 " overwrite")
        return RecordingWriter(staging, source=source, lanes=lanes, resume=resume,
                               segment_seconds=segment_seconds, upload=upload,
                               compact_bytes=COMPACT_BYTES)
    except BaseException:
        upload.release()
        raise
