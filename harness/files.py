"""Writing files so that nothing half-written is ever seen under its final name."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["DirectoryLock", "alive", "fsync_dir", "named", "naming", "redirect_stderr",
           "sha256_file", "stderr_into", "write_atomically"]


def write_atomically(path: Path, chunks: Iterable[bytes], *, durable: bool = False,
                     before_rename: Callable[[Path], None] | None = None) -> None:
    """Write under a temporary name, then rename into place, so that neither a reader
    nor a killed writer ever sees half a file. `durable` also fsyncs file and directory.
    `before_rename` is called with the finished temporary file just before it takes
    `path`'s name. Temporary files that killed writers left beside `path` are removed."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        pid = stale.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not alive(int(pid)):
            stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            f.writelines(chunks)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        if before_rename is not None:
            before_rename(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from None  # disk full: say where
    finally:
        tmp.unlink(missing_ok=True)
    if durable:
        fsync_dir(path.parent)


def alive(pid: int) -> bool:
    """Whether a process with this PID exists (it may belong to someone else)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class DirectoryLock:
    """An advisory lock on a directory, held while a run uses it.

    `flock` on the directory itself, so nothing is written into it; the
    kernel releases it when the holder dies, so a crashed run never leaves a
    stale lock. A holder that is still exiting (the killed run's cluster
    members, say, which hold the lock too) is waited for up to `patience`
    seconds; a live holder is then refused, naming it (Linux: `/proc/locks`).
    `refused` words the refusal (`{holder}` names the holder); a lock on a
    file, not a directory, takes `directory=False`.
    """

    def __init__(self, directory: Path, what: str, patience: float = 2.0, *,
                 directory_only: bool = True, refused: str | None = None) -> None:
        import fcntl
        import time

        from harness.errors import HarnessError

        self._fd = os.open(directory, os.O_RDONLY | (os.O_DIRECTORY if directory_only else 0))
        deadline = time.monotonic() + patience
        try:
            while True:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.05)
        except BlockingIOError:
            holder = _lock_holder(os.fstat(self._fd).st_ino)
            os.close(self._fd)
            raise HarnessError(
                refused.format(holder=holder) if refused is not None else
                f"{what} {directory}: in use by another run ({holder}); wait for it to end or"
                " use another directory") from None
        except BaseException:
            os.close(self._fd)
            raise

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = -1

    def __enter__(self) -> DirectoryLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _lock_holder(inode: int) -> str:
    """`pid N: command` of the process holding a flock on `inode`, if it can be found."""
    try:
        table = Path("/proc/locks").read_text()
    except OSError:
        return "holder unknown"
    for line in table.splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5].endswith(f":{inode}"):
            pid = fields[4]
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                command = b""
            return f"pid {pid}: {command.decode(errors='replace').strip()[:200]}"
    return "holder unknown"


class Counters:
    """A few whole numbers kept current in a small file, for another process to read.

    Each `update` is one `pwrite` of a fixed-size record at offset 0: cheap
    enough for every batch, and the number of writes depends on the work,
    not on the clock (so an instruction-counting gate stays repeatable).
    """

    def __init__(self, path: Path, names: tuple[str, ...]) -> None:
        import struct

        self.names = names
        self._path = path
        self._format = struct.Struct(f"<{len(names)}q")
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    def update(self, values: dict[str, int]) -> None:
        with naming(self._path):
            os.pwrite(self._fd, self._format.pack(*(values[n] for n in self.names)), 0)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @staticmethod
    def read(paths: list[Path], names: tuple[str, ...]) -> dict[str, int]:
        """The sums over counter files (a file not yet written counts zero)."""
        import struct

        record = struct.Struct(f"<{len(names)}q")
        total = dict.fromkeys(names, 0)
        for path in paths:
            data = path.read_bytes()[:record.size]
            if len(data) == record.size:
                for name, value in zip(names, record.unpack(data), strict=True):
                    total[name] += value
        return total


@contextmanager
def stderr_into(path: Path) -> Iterator[int]:
    """Send this process's fd 2 (Rust panics included) into a file for a while; yields
    a descriptor of the real stderr, for what the user must see meanwhile."""
    sys.stderr.flush()
    saved = os.dup(2)
    redirect_stderr(path)
    try:
        yield saved
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def redirect_stderr(path: Path) -> None:
    """Point this process's fd 2 (Rust panics included) at `path`, created or emptied."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 2)
    os.close(fd)


@contextmanager
def naming(path: Path) -> Iterator[None]:
    """An OSError raised inside (a full disk, say) names `path` if it named no file."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise named(exc, path) from None


def named(exc: OSError, path: Path) -> OSError:
    """`exc`, or if it names no file, the same error naming `path`."""
    return exc if exc.filename is not None else OSError(exc.errno, exc.strerror, str(path))


def harness_cache(kind: str) -> Path:
    """Where the harness keeps `kind` of local state (derived lanes, uploads being
    staged): under `HARNESS_CACHE_DIR`, else the user's cache."""
    configured = os.environ.get("HARNESS_CACHE_DIR")
    if configured:
        return Path(configured) / kind
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wikistream-harness" / kind
