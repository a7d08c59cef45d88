"""Checking a recording's finished segments against the sha256 its manifest lists.

A replay checks them beside the run. `SegmentCheck.start` hashes in a child
process forked while this process is still single-threaded (in a thread
where forking is not safe), so the check takes a core the replay leaves
idle and never competes with the workers for the GIL. The command line
starts it as soon as it knows the recording, before the replay's heavy
imports (`begin`); the run that asks for the same check takes that one over.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import NoReturn

import orjson

from harness.errors import HarnessError, RecordingError
from harness.files import sha256_file
from harness.process import can_fork, fork_child, stops_held
from harness.recording.reader import Recording

__all__ = ["SegmentCheck", "begin"]

_Work = tuple[tuple[str, str], ...]  # (segment path, manifest sha256), in manifest order


class SegmentCheck:
    """sha256 of every finished segment against the manifest, computed elsewhere.

    `result()` waits for it: the notes of a `skip_damaged` recording (one per
    mismatching segment), or a `RecordingError` naming the first mismatch.
    """

    def __init__(self, work: _Work, skip_damaged: bool,
                 mismatch: Callable[[str], HarnessError] | None = None) -> None:
        self.work, self.skip_damaged = work, skip_damaged
        self._mismatch = mismatch
        self._pid: int | None = None
        self._pipe: int | None = None
        self._thread: Future[list[str]] | None = None
        self._mismatched: list[str] | None = None

    @classmethod
    def start(cls, recording: Recording) -> SegmentCheck:
        """The check of `recording`: the one `begin` started early, if it is the same."""
        work = _work(recording)
        early = _take_early()
        if early is not None:
            if (early.work, early.skip_damaged) == (work, recording.skip_damaged):
                return early
            early.abandon()  # the recording changed since: check what is there now
        return cls._launched(work, recording.skip_damaged)

    @classmethod
    def of_files(cls, work: _Work, mismatch: Callable[[str], HarnessError]) -> SegmentCheck:
        """A check of other files the run reads (`(path, sha256)`, derived lanes say):
        a mismatch is never damage to skip but the error `mismatch(path)`."""
        return cls._launched(work, False, mismatch)

    @classmethod
    def _launched(cls, work: _Work, skip_damaged: bool,
                  mismatch: Callable[[str], HarnessError] | None = None) -> SegmentCheck:
        check = cls(work, skip_damaged, mismatch)
        try:
            check._launch()
        except BaseException:  # a Ctrl-C just as it started: no check left running
            check.abandon()
            raise
        return check

    def _launch(self) -> None:
        if can_fork():
            self._fork()
            return
        future: Future[list[str]] = Future()

        def run() -> None:
            try:
                future.set_result(_mismatched(self.work))
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=run, daemon=True, name="segment-check").start()
        self._thread = future

    def _fork(self) -> None:
        read_end, write_end = os.pipe()
        with stops_held():
            pid = fork_child({signal.SIGINT: signal.SIG_DFL, signal.SIGTERM: signal.SIG_DFL})
            if not pid:
                self._check_and_exit(read_end, write_end)
            os.close(write_end)
            self._pid, self._pipe = pid, read_end

    def _check_and_exit(self, read_end: int, write_end: int) -> NoReturn:
        """The forked child: hash, write the answer, leave without touching the parent's
        state."""
        try:
            os.close(read_end)
            with contextlib.suppress(OSError):
                os.nice(19)  # the run's workers come first; the check takes what they leave
            try:
                answer: dict[str, object] = {"mismatched": _mismatched(self.work)}
            except OSError as exc:
                answer = {"oserror": [exc.errno, exc.strerror, exc.filename]}
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(orjson.dumps(answer))
        finally:
            os._exit(0)

    def _answer(self) -> list[str]:
        if self._mismatched is not None:
            return self._mismatched
        if self._thread is not None:
            self._mismatched = self._thread.result()
            return self._mismatched
        assert self._pipe is not None and self._pid is not None
        with os.fdopen(self._pipe, "rb") as pipe:
            raw = pipe.read()
        self._pipe = None
        _, status = os.waitpid(self._pid, 0)
        self._pid = None
        if not raw:
            raise HarnessError("checking the segments' sha256 failed: the checking process"
                               f" exited with {os.waitstatus_to_exitcode(status)}")
        answer = orjson.loads(raw)
        if "oserror" in answer:
            raise OSError(*answer["oserror"])
        self._mismatched = list(answer["mismatched"])
        return self._mismatched

    def result(self) -> list[str]:
        """Notes for mismatching segments (`skip_damaged`); else the first one raises."""
        error = self._error(self._answer())
        if error is not None:
            raise error
        return [f"{Path(path).name}: sha256 does not match the manifest"
                for path in self._answer()]

    def failure(self) -> HarnessError | None:
        """The mismatch that `result()` raises, if any (waits for the check)."""
        try:
            return self._error(self._answer())
        except (HarnessError, OSError):
            return None

    def _error(self, mismatched: list[str]) -> HarnessError | None:
        if not mismatched:
            return None
        if self._mismatch is not None:
            return self._mismatch(mismatched[0])
        if self.skip_damaged:
            return None
        return RecordingError(f"{Path(mismatched[0]).name}: sha256 does not match the manifest")

    def abandon(self) -> None:
        """Stop a check whose answer is no longer wanted (the run was interrupted)."""
        if self._pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)  # not yet reaped: the pid is still its
            os.waitpid(self._pid, 0)
            self._pid = None
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None

    def __enter__(self) -> SegmentCheck:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.abandon()


_early: list[SegmentCheck] = []  # at most one, started by `begin`


def begin(directory: str | os.PathLike[str], skip_damaged: bool) -> None:
    """Start checking `directory`'s segments now, for the replay about to run on it.

    Best effort: a recording that cannot be opened is left for the run itself
    to report, in its own words.
    """
    previous = _take_early()
    if previous is not None:
        previous.abandon()
    try:
        recording = Recording(directory, skip_damaged=skip_damaged)
    except (HarnessError, OSError):
        return
    _early.append(SegmentCheck._launched(_work(recording), skip_damaged))


def _take_early() -> SegmentCheck | None:
    return _early.pop() if _early else None


def _work(recording: Recording) -> _Work:
    if recording.remote is not None:  # each frame is checked as it is fetched instead
        return ()
    return tuple((str(recording.segment_path(index)), str(segment.sha256))
                 for index, segment in enumerate(recording.manifest.segments)
                 if segment.complete and index not in recording.missing)


def _mismatched(work: _Work) -> list[str]:
    return [path for path, expected in work if sha256_file(Path(path)) != expected]
