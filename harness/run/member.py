"""One member's share of a run: this process runs a job's dataflow with Bytewax's own
cluster entry point (`cli_main`, what `python -m bytewax.run` calls), all of it when
there are no peers.

Whatever goes wrong comes out as one error: a `HarnessError` a source or step
raised or logged (`first_error`), a broken recovery database, or `ClusterError`
when a peer went away. Timely's retry lines are kept off stdout (`--json`), and
the Rust panics that accompany a failure off stderr (`forward_stderr`).
"""

from __future__ import annotations

import io
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Final, cast

from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig
from bytewax.run import cli_main

from harness.errors import ERRORS, HarnessError, MemberFailed, first_logged, log_error
from harness.files import stderr_into
from harness.flows.surgery import reporting_failures
from harness.run.job import Job
from harness.run.recovery import recovery_db_error

__all__ = ["BROKEN", "ClusterError", "execute", "first_error", "forward_stderr",
           "run_member"]

# Bytewax's entry points, typed (its stubs leave them untyped).
_cli_main = cast(Callable[..., None], cli_main)
_recovery_config = cast(Callable[[str], RecoveryConfig], RecoveryConfig)


class ClusterError(RuntimeError):
    """A member process of a cluster failed."""


BROKEN: Final = "the connection to another cluster member broke"
"""What a member knows when a peer went away: that peer's own report says why."""


def first_error(run_dir: Path) -> HarnessError | MemberFailed | OSError | None:
    """The first error a source, step or member logged (`harness.errors.log_error`)."""
    log = run_dir / ERRORS
    return first_logged(log.read_text(errors="replace")) if log.exists() else None


def _as_member(run: Callable[[], None], addresses: list[str], stderr: int) -> None:
    """Run `run` (this member's `cli_main`) on a thread of its own, so that SIGINT and
    SIGTERM are handled while Bytewax waits in Rust for peers that may never come.

    Timely prints each failed attempt to reach a peer on stdout, which would corrupt
    `--json` output: those lines become one stderr note per peer (repeated every
    `_WAITING_EVERY` seconds); everything else written to stdout passes through.
    """
    failure: list[BaseException] = []

    def member() -> None:
        try:
            run()
        except BaseException as exc:  # handed to the main thread
            failure.append(exc)

    sys.stdout.flush()
    saved_out = os.dup(1)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 1)
    os.close(write_end)
    relay = threading.Thread(target=_relay_stdout, args=(read_end, saved_out, addresses,
                                                         stderr), daemon=True)
    relay.start()
    thread = threading.Thread(target=member, daemon=True, name="cluster-member")
    finished = False
    try:
        thread.start()
        while thread.is_alive():
            thread.join(0.1)
        finished = not failure
    finally:
        sys.stdout.flush()
        if finished:
            os.dup2(saved_out, 1)  # the pipe's last writer closes: the relay drains, ends
            relay.join(timeout=2)
            os.close(saved_out)
        else:
            _own_stdout(saved_out)
    if failure:
        raise failure[0]


def _own_stdout(real_out: int) -> None:
    """After a member failed or was interrupted: Python's stdout writes to `real_out`
    from now on, while fd 1 stays on the relay. Timely's threads outlive such a run and
    print a retry line every second until the process exits; not one of them may reach
    the real stdout (`--json` output)."""
    old = sys.stdout
    sys.stdout = io.TextIOWrapper(io.FileIO(real_out, "w"),
                                  encoding=getattr(old, "encoding", None) or "utf-8",
                                  errors=getattr(old, "errors", None), line_buffering=True)


_WAITING_EVERY = 10.0


def _relay_stdout(read_end: int, out: int, addresses: list[str], stderr: int) -> None:
    told: dict[int, float] = {}
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        for line in iter(pipe.readline, b""):
            retry = _CONNECT_RETRY.search(line.decode(errors="replace"))
            if retry is None:
                os.write(out, line)
                continue
            peer = int(retry.group(1))
            now = time.monotonic()
            if now - told.get(peer, -_WAITING_EVERY) >= _WAITING_EVERY:
                told[peer] = now
                where = addresses[peer] if peer < len(addresses) else "?"
                os.write(stderr, f"harness: waiting for cluster member {peer} at {where}"
                                 " (not reachable yet; Ctrl-C stops)\n".encode())


def _harness_error(exc: BaseException | None) -> HarnessError | None:
    while exc is not None:
        if isinstance(exc, HarnessError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def forward_stderr(log: Path) -> None:
    """Pass on what a run wrote to stderr (a flow's own messages, say), without the
    Rust panics that accompany a failure (the failure is reported in one line), nor
    the blank lines they leave."""
    kept: list[str] = []
    in_panic = False
    for line in log.read_text(errors="replace").splitlines(keepends=True):
        if _PANIC.match(line):
            in_panic = True
        if in_panic:
            in_panic = not line.startswith("note:")
            continue
        if not _CONNECT_RETRY.search(line):
            kept.append(line)
    sys.stderr.write("".join(kept).strip("\n") + "\n" if "".join(kept).strip() else "")


# Bytewax logs this while cluster members start one after the other; it is not an error.
_CONNECT_RETRY = re.compile(r"error connecting to worker (\d+): .*retrying")
_PANIC = re.compile(r"thread '.*' panicked at ")


def execute(flow: Dataflow, run_dir: Path, workers: int, addresses: list[str] | None = None,
            process_id: int | None = None, recovery: RecoveryConfig | None = None,
            epoch_interval: float | None = None) -> None:
    """Run a flow's share in this process with Bytewax's own cluster entry point.

    Bad input found while running (a damaged recording, say) surfaces as the
    `HarnessError` that names the place, not as Bytewax's wrapped error and a
    Rust panic on stderr.
    """
    log = run_dir / f"stderr-{process_id or 0}.log"

    def run() -> None:
        _cli_main(flow, workers_per_process=workers,
                   process_id=process_id, addresses=addresses, recovery_config=recovery,
                  epoch_interval=timedelta(seconds=epoch_interval) if epoch_interval
                  else None)

    try:
        with stderr_into(log) as stderr:
            if addresses is None:
                run()
            else:
                _as_member(run, addresses, stderr)
    except BaseException as exc:  # Bytewax raises PanicException, a BaseException
        cause = _harness_error(exc) or first_error(run_dir)
        if cause is not None:
            raise cause from None
        forward_stderr(log)
        db_error = recovery_db_error(exc, Path(recovery.db_dir)) if recovery else None
        if db_error is not None:
            raise db_error from None
        if addresses is not None and "thread panic" in str(exc):
            raise ClusterError(BROKEN) from None
        raise
    forward_stderr(log)


def run_member(job: Job, run_dir: Path, addresses: list[str] | None = None,
               process_id: int | None = None, *, flow: Dataflow | None = None,
               ready: Callable[[], None] = lambda: None) -> None:
    """Run this process's part of the cluster (all of it when no addresses).

    `flow` is the job's dataflow when it is built already (a forked member
    inherits the parent's); `ready` is called just before it starts (a forked
    member waits there for the member it connects to)."""
    read = job.read
    recovery = (_recovery_config(str(read.recovery_dir / "db"))
                if read.recovery_dir is not None else None)
    if flow is None:
        flow = job.build(run_dir)
    if addresses is not None:  # Bytewax loses a step's exception between processes
        reporting_failures(flow, partial(log_error, run_dir / ERRORS))
    ready()
    execute(flow, run_dir, read.workers, addresses, process_id, recovery,
            read.snapshot_interval if recovery is not None else None)
