"""Output files of a run, checked before the run and written atomically after it.

Every output a command writes (`--out`, `--dead-letters`, a report) goes
through `Outputs`, so the rules hold for all of them: an existing file is
never replaced without `--force`; two options never name one file; nothing
is written inside a recording being read; a directory is refused up front,
not after the work. A rerun of a resumed replay may rewrite the files its
recovery state wrote before, and only while they are still exactly those
(their sha256 is kept in the state's `outputs.json`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from harness.errors import UsageError
from harness.files import sha256_file, write_atomically

__all__ = ["Outputs"]

RECORD = "outputs.json"


class Outputs:
    """The output files of one run, by option name (`--out`, ...)."""

    def __init__(self, files: dict[str, Path | None], *, force: bool = False,
                 reading: Iterable[Path] = (), state: Path | None = None) -> None:
        self.files = {option: path for option, path in files.items() if path is not None}
        self._state = state
        written_before = self._written_before()
        seen: dict[Path, str] = {}
        for option, path in self.files.items():
            resolved = path.resolve()
            if resolved in seen:
                raise UsageError(f"{option} {path}: the same file as {seen[resolved]}")
            seen[resolved] = option
            if path.is_dir():
                raise UsageError(f"{option} {path}: is a directory")
            if not path.parent.is_dir():
                raise UsageError(f"{option} {path}: directory {path.parent} does not exist")
            for source in reading:
                if resolved.is_relative_to(source.resolve()):
                    raise UsageError(f"{option} {path}: inside the recording {source} being"
                                     " read; write it elsewhere")
            if path.exists() and not force and written_before.get(resolved) is not True:
                raise UsageError(f"{option} {path}: exists; refusing to overwrite (use --force)")
        for option, path in self.files.items():
            for other, other_path in self.files.items():
                if option < other and path.exists() and other_path.exists() and \
                        os.path.samefile(path, other_path):
                    raise UsageError(f"{option} {path}: the same file as {other}")

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
