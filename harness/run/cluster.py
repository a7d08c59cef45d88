"""A local Bytewax cluster: `Cluster` starts `processes` members on a
localhost address list (what `python -m bytewax.run -i/-a` does): forked
from this already-warm process when that is safe, else each a fresh
`python -m harness.run.cluster` given the job as JSON; it supervises them
by PID and reports the first member's error in one line.
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NoReturn

from bytewax.dataflow import Dataflow

from harness.errors import (
    ERRORS,
    HarnessError,
    first_logged,
    log_error,
    log_errors_to,
)
from harness.files import redirect_stderr
from harness.process import can_fork, die_with_parent, fork_child, stops_held
from harness.run.job import Job, job_from_json, job_to_json
from harness.run.member import BROKEN, ClusterError, first_error, forward_stderr, run_member

__all__ = ["Cluster", "free_addresses", "terminate"]



def free_addresses(count: int) -> list[str]:
    """`count` loopback addresses with ports free right now."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]


class Cluster:
    """A local cluster of `job.read.processes` members, started and supervised by PID.

    Members are forked from this process, which has imported everything
    already (and built the job's dataflow, once `run_job` prepared it), so a member starts
    in milliseconds; where forking is not safe (other threads running) they
    are started as fresh `python -m harness.run.cluster` interpreters
    instead. Member i
    connects to members below it, so it waits until member i-1 listens.
    Start it before starting any thread of your own.
    """

    def __init__(self, job: Job, run_dir: Path) -> None:
        self.job, self.run_dir = job, run_dir
        self.addresses = free_addresses(job.read.processes)
        self.logs = [run_dir / f"process-{i}.err" for i in range(job.read.processes)]
        self.members: list[_Member] = []
        self._said = bytearray()  # what members logged (`harness.errors.log_errors_to`)

    def start(self) -> None:
        job, run_dir, addresses = self.job, self.run_dir, self.addresses
        self._errors, errors_in = os.pipe()
        os.set_blocking(self._errors, False)
        flow = job.build(run_dir) if can_fork() else None  # built once, inherited by all
        if flow is not None and not can_fork():  # building it started a thread
            flow = None
        try:
            for index, log in enumerate(self.logs):
                if flow is not None:
                    with stops_held():  # a Ctrl-C now is handled once the member is known
                        self.members.append(_Member(pid=_fork_member(
                            job, flow, run_dir, addresses, index, log, errors_in)))
                    continue
                if index:  # members connect to lower ones; too early, Bytewax waits 1 s
                    _await_listening(_port(addresses[index - 1]), self.members[-1].poll)
                with log.open("wb") as err:
                    self.members.append(_Member(popen=subprocess.Popen(
                        [sys.executable, "-m", "harness.run.cluster", job_to_json(job),
                         str(run_dir), ";".join(addresses), str(index), str(os.getpid()),
                         str(errors_in)], stderr=err, pass_fds=(errors_in,))))
        except BaseException:
            _wait_all(self.members, grace=0.0)
            os.close(self._errors)
            raise
        finally:
            os.close(errors_in)

    def wait(self) -> None:
        """Until every member has ended; then report the first failure in one line."""
        members = self.members
        try:
            # One failed member makes its peers fail too; wait for all, then explain.
            while None in (codes := [m.poll() for m in members]):  # poll every member
                if any(code not in (None, 0) for code in codes):
                    _wait_all(members, grace=3.0)
                    break
                _until_one_ends(members, self._errors)
                self._hear()
        finally:
            _wait_all(members, grace=0.0)
            self._hear()
            os.close(self._errors)
        error = (first_logged(self._said.decode(errors="replace"))
                 or first_error(self.run_dir))
        killed = [(index, member.returncode) for index, member in enumerate(members)
                  if member.returncode is not None and member.returncode < 0]
        if killed and (error is None or BROKEN in str(error)):  # it could not say why
            index, code = killed[0]
            raise ClusterError(f"cluster process {index} was killed by"
                               f" {signal.Signals(-code).name}")
        if error is not None:
            raise error
        for log in self.logs:
            forward_stderr(log)
        for index, member in enumerate(members):
            if member.returncode != 0:
                raise ClusterError(f"cluster process {index} exited with {member.returncode}")


    def _hear(self) -> None:
        """Take what members logged so far, so that none waits on a full pipe."""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self._errors, 65536):
                self._said += chunk


def _until_one_ends(members: list[_Member], errors: int, timeout: float = 1.0) -> None:
    """Sleep until a running member ends or logs an error (Linux: on pidfds, waking at
    once), at most `timeout` seconds; elsewhere for a short while."""
    fds: list[int] = []
    try:
        for member in members:
            if member.returncode is None and member.pid is not None:
                fds.append(os.pidfd_open(member.pid))
        poller = select.poll()
        poller.register(errors, select.POLLIN)
        for fd in fds:
            poller.register(fd, select.POLLIN)
        poller.poll(timeout * 1000)
    except (AttributeError, OSError):  # no pidfds here
        time.sleep(0.01)
    finally:
        for fd in fds:
            os.close(fd)


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def _fork_member(job: Job, flow: Dataflow, run_dir: Path, addresses: list[str], index: int,
                 log: Path, errors: int) -> int:
    """Fork member `index`; the child runs it, logging errors down pipe `errors`, and
    leaves with `os._exit`."""
    pid = fork_child({signal.SIGINT: signal.default_int_handler,
                      signal.SIGTERM: signal.SIG_DFL})
    if pid:
        return pid
    log_errors_to(errors)

    def run() -> None:
        gc.freeze()  # this child runs one member and exits: its GC skips what it inherited
        redirect_stderr(log)
        lower = _port(addresses[index - 1]) if index else None
        run_member(job, run_dir, addresses, index, flow=flow,
                   ready=lambda: None if lower is None else _await_listening(lower, lambda: None))

    _leave_after(run, run_dir)


class _Member:
    """A cluster member process: forked (a pid) or started (a Popen), ended by PID."""

    def __init__(self, pid: int | None = None,
                 popen: subprocess.Popen[bytes] | None = None) -> None:
        self._popen = popen
        self.pid = popen.pid if popen is not None else pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            if self._popen is not None:
                self.returncode = self._popen.poll()
            else:
                assert self.pid is not None
                done, status = os.waitpid(self.pid, os.WNOHANG)
                if done:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.returncode

    def terminate(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it is still there after `grace` seconds."""
        if self.poll() is not None or self.pid is None:
            return
        os.kill(self.pid, signal.SIGTERM)
        if self.wait(grace) is None:
            os.kill(self.pid, signal.SIGKILL)
            while self.poll() is None:
                time.sleep(0.01)


def _await_listening(port: int, ended: Callable[[], int | None], timeout: float = 10.0
                     ) -> None:
    """Wait until a local TCP port is in LISTEN state (Linux /proc; else a short pause),
    or its process has `ended`."""
    table = Path("/proc/net/tcp")
    if not table.exists():
        time.sleep(0.5)
        return
    wanted = f":{port:04X} "
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and ended() is None:
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            if (fields[1] + " ").endswith(wanted) and fields[3] == "0A":
                return
        time.sleep(0.001)


def _wait_all(members: list[_Member], grace: float) -> None:
    """Let members finish within `grace` seconds, then end the rest by PID."""
    deadline = time.monotonic() + grace
    for member in members:
        if member.wait(max(deadline - time.monotonic(), 0.0)) is None:
            member.terminate()


def terminate(proc: subprocess.Popen[Any], grace: float = 5.0) -> None:
    """End a child by its PID: SIGTERM, then SIGKILL if it is still there after `grace` s."""
    _Member(popen=proc).terminate(grace)


def _member_main(argv: list[str]) -> None:
    spec, run_dir, addresses, process_id, parent, errors = argv
    log_errors_to(int(errors))
    # Armed here, not in a preexec_fn: Python runs its fork hooks for a preexec_fn,
    # and a Ctrl-C raised in one of them is dropped (see `stops_held`). A parent that
    # died before this would leave the member orphaned (re-parented): leave at once.
    die_with_parent()
    if os.getppid() != int(parent):
        os._exit(1)
    _leave_after(lambda: run_member(job_from_json(spec), Path(run_dir), addresses.split(";"),
                                    int(process_id)), Path(run_dir))


def _leave_after(run: Callable[[], None], run_dir: Path) -> NoReturn:
    """Run a member, then leave the process with `os._exit`: 0, or 2 for bad input, 130
    for Ctrl-C, 1 for anything else, its error logged for the parent to report."""
    code = 1
    try:
        run()
        code = 0
    except HarnessError as exc:
        log_error(run_dir / ERRORS, exc)  # the parent reports it from there
        code = 2
    except KeyboardInterrupt:
        code = 130
    except BaseException as exc:  # a step's failure, a panic, a peer's: said for the parent
        with contextlib.suppress(OSError):
            log_error(run_dir / ERRORS, exc)
    finally:
        os._exit(code)


if __name__ == "__main__":
    _member_main(sys.argv[1:])
