"""Output files of a run, checked and claimed before the run, written after it.

Every output a command writes (`--out`, `--dead-letters`, a report) goes
through `Outputs`, so the rules hold for all of them:

- an existing file is never replaced without `--force`; two options never
  name one file; nothing is written inside a recording being read or inside
  the run's recovery state (nor is a recovery state kept inside the
  recording); a directory or a symlink is refused up front, not after the work;
- a regular file is written atomically (a temporary file renamed into place);
  a character device or FIFO (`/dev/null`, `/dev/stdout`, a pipe) is written
  to where it is, never replaced, and needs no `--force`;
- a run *claims* each regular output before it starts: an advisory lock keyed
  by the file's path (in the temporary directory, so nothing is left beside
  the file), held until the process ends, which the kernel releases however it
  ends. A second run naming the same file, `--force` or not, is refused in one
  line naming the run that holds it.

A rerun of a resumed replay may rewrite the files its recovery state wrote
before, and only while they are still exactly those (their sha256 is kept in
the state's `outputs.json`).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from harness.errors import UsageError
from harness.files import DirectoryLock, sha256_file, write_atomically

__all__ = ["Outputs"]

RECORD = "outputs.json"


class Outputs:
    """The output files of one run, by option name (`--out`, ...)."""

    def __init__(self, files: dict[str, Path | None], *, force: bool = False,
                 reading: Iterable[Path] = (), state: Path | None = None) -> None:
        self.files = {option: path for option, path in files.items() if path is not None}
        self._state = state
        self._claims: list[DirectoryLock] = []
        reading = list(reading)
        if state is not None:
            for source in reading:
                if state.resolve().is_relative_to(source.resolve()):
                    raise UsageError(f"--recovery-dir {state}: inside the recording {source}"
                                     " being read; keep it elsewhere")
        written_before = self._written_before()
        seen: dict[Path, str] = {}
        for option, path in self.files.items():
            if path.is_symlink():
                raise UsageError(f"{option} {path}: is a symlink; name the file it points to")
            resolved = path.resolve()
            if resolved in seen:
                raise UsageError(f"{option} {path}: the same file as {seen[resolved]}")
            seen[resolved] = option
            if path.is_dir():
                raise UsageError(f"{option} {path}: is a directory")
            if not path.parent.is_dir():
                raise UsageError(f"{option} {path}: directory {path.parent} does not exist")
            for source, what in [*((r, "the recording") for r in reading),
                                 *([(state, "the recovery state")] if state else [])]:
                if resolved.is_relative_to(source.resolve()):
                    raise UsageError(f"{option} {path}: inside {what} {source}; write it"
                                     " elsewhere")
            kind = _kind(path)
            if kind == "other":
                raise UsageError(f"{option} {path}: is neither a file, a character device nor"
                                 " a FIFO")
            if kind == "stream":
                continue  # written where it is: nothing to replace, nothing to claim
            if path.exists() and not force and written_before.get(resolved) is not True:
                raise UsageError(f"{option} {path}: exists; refusing to overwrite (use --force)")
        for option, path in self.files.items():
            for other, other_path in self.files.items():
                if option < other and path.exists() and other_path.exists() and \
                        os.path.samefile(path, other_path):
                    raise UsageError(f"{option} {path}: the same file as {other}")
        for option, path in self.files.items():
            if _kind(path) == "file":
                self._claims.append(_claim(option, path))

    def _written_before(self) -> dict[Path, bool]:
        """Files this recovery state wrote, and whether each is still as written."""
        if self._state is None or not (self._state / RECORD).is_file():
            return {}
        try:
            record = json.loads((self._state / RECORD).read_text())
            return {Path(p): Path(p).is_file() and sha256_file(Path(p)) in _digests(granted)
                    for p, granted in record.items()}
        except (OSError, ValueError, AttributeError, TypeError):
            return {}  # a damaged record grants nothing

    def __contains__(self, option: str) -> bool:
        return option in self.files

    def write(self, option: str, chunks: Iterable[bytes]) -> None:
        """Write one output atomically (a killed run never leaves half a file).

        Under a recovery state the new file's digest is recorded before it takes its
        name, so that a run killed at any point leaves a file its rerun may replace.
        """
        path = self.files.get(option)
        if path is None:
            return
        if _kind(path) == "stream":
            try:
                with path.open("wb") as f:
                    f.writelines(chunks)
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, str(path)) from None
            return
        write_atomically(path, chunks,
                         before_rename=None if self._state is None else
                         lambda written: self._grant(path, sha256_file(written)))

    def _grant(self, path: Path, digest: str) -> None:
        """Record in the state that this run wrote `path` with this content."""
        assert self._state is not None
        record_path = self._state / RECORD
        try:
            record = json.loads(record_path.read_text()) if record_path.is_file() else {}
        except ValueError:
            record = {}
        key = str(path.resolve())
        # the file now in place stays granted too, until the new one has replaced it
        record[key] = [*_digests(record.get(key))[-1:], digest]
        write_atomically(record_path, [json.dumps(record).encode()])


def _digests(granted: object) -> list[str]:
    """The digests a record grants for one file (one string in older states)."""
    if isinstance(granted, str):
        return [granted]
    return [d for d in granted if isinstance(d, str)] if isinstance(granted, list) else []


def _kind(path: Path) -> str:
    """"file" (a regular file, or none yet), "stream" (a character device or FIFO,
    written where it is) or "other"."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "file"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return "stream"
    return "other"


def _claim(option: str, path: Path) -> DirectoryLock:
    """This process's hold on writing `path` (see the module doc)."""
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:24]
    lock = Path(tempfile.gettempdir()) / f"harness-out-{digest}.lock"
    lock.touch(exist_ok=True)
    return DirectoryLock(lock, option, patience=0.0, directory_only=False,
                         refused=f"{option} {path}: being written by another run ({{holder}});"
                                 " wait for it to end or write elsewhere")
