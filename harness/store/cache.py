"""`FrameCache`: a local, bounded cache of what was fetched from object storage.

Content-addressed: an entry's name is the sha256 its manifest gives for it,
so an entry is checked against its name each time it is read (a damaged one
is dropped and fetched again), and the same bytes are never stored twice.
When the entries pass the bound, the least recently used go first. Several
processes may share one cache: entries are written to a temporary name and
renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from pathlib import Path
from typing import Final

__all__ = ["CACHE_ENV", "CACHE_MB_ENV", "FrameCache"]

CACHE_ENV: Final = "HARNESS_S3_CACHE"  # --cache DIR
CACHE_MB_ENV: Final = "HARNESS_S3_CACHE_MB"  # --cache-mb N (default 2048)


class FrameCache:
    """Verified bytes by sha256 under `directory`, at most about `limit` bytes of them."""

    def __init__(self, directory: Path, limit: int) -> None:
        self.directory = directory
        self.limit = limit
        self._puts = 0
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)
        self._size = sum(entry.stat().st_size for entry in self._entries())

    @classmethod
    def from_env(cls) -> FrameCache | None:
        """The process's cache that `--cache` configured (`HARNESS_S3_CACHE`), if any."""
        directory = os.environ.get(CACHE_ENV)
        if not directory:
            return None
        limit = int(float(os.environ.get(CACHE_MB_ENV, "2048")) * (1 << 20))
        with _opening:
            key = (directory, limit)
            if key not in _opened:
                _opened[key] = cls(Path(directory), limit)
            return _opened[key]

    def get(self, digest: bytes) -> bytes | None:
        """The bytes whose sha256 is `digest`, if cached and still intact."""
        path = self._path(digest)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if hashlib.sha256(data).digest() != digest:
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used
        return data

    def put(self, digest: bytes, data: bytes) -> None:
        """Keep `data` (already checked against `digest`), then keep within the bound."""
        if len(data) > self.limit:
            return
        path = self._path(digest)
        path.parent.mkdir(exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            temporary.write_bytes(data)
            os.replace(temporary, path)
        except OSError:  # a full disk: the cache is an optimisation, the read goes on
            with contextlib.suppress(OSError):
                temporary.unlink()
            return
        with self._lock:
            self._size += len(data)
            self._puts += 1
            # Other processes may be filling it too: look at the whole of it now and then.
            over = self._size > self.limit or self._puts % 32 == 0
        if over:
            self._evict()

    def _evict(self) -> None:
        """Drop the least recently used entries until the cache is at 90% of its bound."""
        entries = []
        for entry in self._entries():
            with contextlib.suppress(OSError):
                stat = entry.stat()
                entries.append((stat.st_mtime_ns, stat.st_size, entry))
        entries.sort()
        size = sum(s for _, s, _ in entries)
        keep = self.limit * 0.9 if size > self.limit else self.limit
        for _, entry_size, entry in entries:
            if size <= keep:
                break
            with contextlib.suppress(OSError):
                entry.unlink()
                size -= entry_size
        with self._lock:
            self._size = size

    def _entries(self) -> list[Path]:
        return [p for p in self.directory.glob("??/*") if not p.name.startswith(".")]

    def _path(self, digest: bytes) -> Path:
        name = digest.hex()
        return self.directory / name[:2] / name


_opening = threading.Lock()
_opened: dict[tuple[str, int], FrameCache] = {}
