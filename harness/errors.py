"""The errors a user is shown: one line that names the file, argument or place.

`HarnessError` and its subclasses are *bad input* (exit status 2): a
recording that is missing or damaged, an argument out of range, an endpoint
that cannot be streamed from, state that belongs to another run. Anything
else that escapes is an unexpected failure (exit status 1).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, ParamSpec, TypeVar

__all__ = ["ERRORS", "HarnessError", "Interrupted", "MemberFailed", "NoSuchObject",
           "RecordingError", "StoreError", "StoreUnavailable", "StreamError", "Terminated",
           "UsageError", "describe", "first_logged", "interruption", "log_error",
           "log_errors_to", "logging_errors"]

ERRORS: Final = "errors.txt"  # a run directory's error log (see `logging_errors`)

P = ParamSpec("P")
R = TypeVar("R")


class HarnessError(Exception):
    """Bad input; the message names where (exit status 2)."""


class UsageError(HarnessError):
    """A bad argument or option value."""


class RecordingError(HarnessError):
    """A recording is missing, damaged or inconsistent; the message says where."""


class StreamError(HarnessError):
    """An endpoint cannot be streamed from (bad URL, fatal status, retries exhausted)."""


class StoreError(HarnessError):
    """Object storage refused a request: no such bucket or object, access denied, a bad
    `s3://` address (exit status 2). Never carries credentials."""


class NoSuchObject(StoreError):
    """The object asked for is not in the bucket."""


class StoreUnavailable(Exception):
    """Object storage did not answer, or kept failing, after every retry (exit status 1:
    nothing was wrong with the input)."""


class Terminated(BaseException):
    """SIGTERM, raised in the main thread the way KeyboardInterrupt is for SIGINT."""


class MemberFailed(Exception):
    """An unexpected failure in a cluster member; the message is the member's own one-line
    description of it (`describe`), which the parent reports as it is."""


class Interrupted(BaseException):
    """A run stopped by SIGINT or SIGTERM; `partial` is what it had done by then."""

    def __init__(self, signal_name: str, partial: Any = None) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.partial = partial


def signal_exit_status(signal_name: str) -> int:
    """The exit status after a run ended by a signal: 130 for SIGINT, 143 for SIGTERM."""
    return 143 if signal_name == "SIGTERM" else 130


def interruption(exc: BaseException | None) -> str | None:
    """"SIGINT" or "SIGTERM" if `exc` is, or was caused by, an interruption."""
    seen = 0
    while exc is not None and seen < 50:
        if isinstance(exc, KeyboardInterrupt):
            return "SIGINT"
        if isinstance(exc, Terminated):
            return "SIGTERM"
        if isinstance(exc, Interrupted):
            return exc.signal_name
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def log_error(error_log: Path, exc: BaseException, step: str | None = None) -> None:
    """Append `exc` to a run's error log (one line: its class, a tab, its message), where
    the process that supervises the run finds it (`first_logged`). Bad input and a file
    error keep their class; anything else is a `MemberFailed` with its description and
    the `step` it was raised in."""
    if isinstance(exc, HarnessError):
        kind, text = type(exc).__name__, str(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        kind, text = "OSError", f"{exc.errno}\t{exc.filename or ''}\t{exc.strerror}"
    else:
        kind = MemberFailed.__name__
        text = describe(exc) + (f" (in step {step})" if step else "")
    line = f"{kind}\t{' / '.join(text.splitlines())}"[:2000] + "\n"
    try:
        if _channel is not None:
            os.write(_channel, line.encode(errors="replace"))  # < PIPE_BUF: never interleaved
            return
        with error_log.open("a") as log:
            log.write(line)
    except OSError:
        pass  # a full disk, say: the error itself still propagates


_channel: int | None = None


def log_errors_to(pipe: int | None) -> None:
    """Send this process's error log down `pipe`, not into the run directory's file: a
    local cluster's member reports to its parent so, for the member's disk may be full."""
    global _channel
    _channel = pipe


def first_logged(text: str) -> HarnessError | MemberFailed | OSError | None:
    """The first error an error log's text holds (`log_error`), to raise again."""
    for line in text.splitlines():
        error = _logged_error(line)
        if error is not None:
            return error
    return None


def _logged_error(line: str) -> HarnessError | MemberFailed | OSError | None:
    """The error one line of a run's error log holds (`log_error`), to raise again."""
    kind, tab, message = line.partition("\t")
    if not tab:
        return HarnessError(line) if line.strip() else None
    if kind == MemberFailed.__name__:
        return MemberFailed(message)
    if kind == "OSError":
        errno, filename, strerror = message.split("\t", 2)
        return OSError(int(errno), strerror, filename or None)
    cls = globals().get(kind)
    return cls(message) if isinstance(cls, type) and issubclass(cls, HarnessError) \
        else HarnessError(message)


def describe(exc: BaseException) -> str:
    """The innermost cause of a failure, in one line (a flow's exception, say), with the
    step it happened in when Bytewax said."""
    chain = [exc]
    while chain[-1].__cause__ is not None and len(chain) < 20:
        chain.append(chain[-1].__cause__)
    root = chain[-1]
    if isinstance(root, MemberFailed):
        return str(root)
    steps = [str(e) for e in chain if "in step" in str(e)]
    where = ""
    if steps:
        import re

        found = re.search(r'in step "([^"]+)"', steps[0])
        where = f" (in step {found.group(1)})" if found else ""
    text = " / ".join(line.strip() for line in str(root).splitlines() if line.strip())
    return f"{type(root).__name__}: {text}{where}"[:500]


def logging_errors(fn: Callable[P, R], error_log: Path | None,
                   kinds: tuple[type[BaseException], ...] = ()) -> Callable[P, R]:
    """`fn`, also appending any `HarnessError` (or one of `kinds`) it raises to
    `error_log`.

    Bytewax may lose an exception on its way out of a multi-process cluster;
    the cluster supervisor reads the log to report the place instead.
    """
    if error_log is None:
        return fn
    logged_kinds: tuple[type[BaseException], ...] = (HarnessError, *kinds)

    def logged(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except logged_kinds as exc:
            log_error(error_log, exc)
            raise

    return logged
