"""Where a run's outputs go: a temporary run directory, or a recovery state.

A recovery directory (`--recovery-dir`) holds Bytewax's recovery database
(`db/`), the workers' part files (`parts/`) and `replay.json`, which says
which replay made it. Resuming with another recording, another flow or other
parameters would mix two answers, so it is refused; so is a second run while
one holds the directory (an advisory lock). A temporary run directory is
named after its process, and one whose process is gone (killed outright) is
removed by the next run.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from bytewax.recovery import init_db_dir

from harness.errors import HarnessError
from harness.files import DirectoryLock, alive, stderr_into, write_atomically

__all__ = ["RECOVERY_PARTITIONS", "recovery_db_error", "run_directory"]

_init_db_dir = cast(Callable[[Path, int], None], init_db_dir)  # Bytewax leaves it untyped

RECOVERY_PARTITIONS = 4
IDENTITY = "replay.json"
_RUN_PREFIX = "harness-run-"
_RUN_NAME = re.compile(re.escape(_RUN_PREFIX) + r"(\d+)-")


@contextmanager
def run_directory(recovery_dir: Path | None, identity: dict[str, Any]) -> Iterator[Path]:
    """The directory the workers write into, for the duration of a run."""
    if recovery_dir is None:
        remove_stale_run_directories()
        with tempfile.TemporaryDirectory(prefix=f"{_RUN_PREFIX}{os.getpid()}-") as tmp:
            yield Path(tmp)
        return
    state = recovery_dir
    if state.exists() and not state.is_dir():
        raise HarnessError(f"--recovery-dir {state}: exists and is not a directory")
    marker = state / IDENTITY
    if not marker.is_file():
        _create(state, identity)
    with DirectoryLock(state, "--recovery-dir"):
        made_by = _read_identity(marker)
        if made_by != identity:
            changed = sorted(k for k in identity.keys() | made_by.keys()
                             if made_by.get(k) != identity.get(k))
            raise HarnessError(f"--recovery-dir {state}: made by a different replay"
                               f" ({', '.join(changed)} differ); use a new directory")
        yield state / "parts"


def _create(state: Path, identity: dict[str, Any]) -> None:
    """Build a recovery state aside and rename it into place, so that a run killed
    while creating it leaves no half-made state that the rerun would refuse."""
    if state.exists() and any(state.iterdir()):
        raise HarnessError(f"--recovery-dir {state}: exists, not empty, and not a"
                           " replay's recovery state; refusing to use it")
    state.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{state.name}.", dir=state.parent))
    try:
        (staging / "db").mkdir()
        (staging / "parts").mkdir()
        try:
            with stderr_into(staging / "init.log"):  # a panic's text is not for the user
                _init_db_dir(staging / "db", RECOVERY_PARTITIONS)
        except BaseException as exc:  # Bytewax panics (a BaseException) on a full disk
            error = recovery_db_error(exc, state / "db")
            if error is None:
                raise
            raise error from None
        (staging / "init.log").unlink()
        write_atomically(staging / IDENTITY, [json.dumps(identity).encode()], durable=True)
        with contextlib.suppress(FileNotFoundError):
            state.rmdir()  # empty, checked above
        os.rename(staging, state)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (state / IDENTITY).is_file():
            raise
        # another run created it first; the lock decides who goes on
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def recovery_db_error(exc: BaseException, db_dir: Path) -> OSError | None:
    """Bytewax's panic on a recovery database it cannot write (a full disk, say), as
    the one-line error it is; None if `exc` is something else."""
    text = str(exc)
    if "RusqliteError" not in text:
        return None
    found = re.search(r'Some\("([^"]+)"\)', text)
    problem = found.group(1) if found else "I/O error"
    return OSError(errno.EIO, f"cannot write Bytewax's recovery database ({problem};"
                              " is the disk full?)", str(db_dir))


def _read_identity(marker: Path) -> dict[str, Any]:
    try:
        made_by = json.loads(marker.read_text())
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{marker}: damaged ({exc}); use a new --recovery-dir") from None
    if not isinstance(made_by, dict):
        raise HarnessError(f"{marker}: damaged (not an object); use a new --recovery-dir")
    return made_by


def remove_stale_run_directories() -> None:
    """Remove run directories whose process no longer exists (a SIGKILL'd run's)."""
    for path in Path(tempfile.gettempdir()).glob(_RUN_PREFIX + "*"):
        match = _RUN_NAME.match(path.name)
        if match is None or alive(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            shutil.rmtree(path)

