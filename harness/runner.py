"""Running the flow over a recording: in this process or as a local Bytewax cluster.

`replay()` is the library entry point behind `harness replay`. With
`processes > 1` it starts that many `python -m harness.runner` processes,
each a member of one Bytewax cluster (Bytewax's own `cli_main` with a
localhost address list, exactly what `python -m bytewax.run -i/-a` does),
waits for them, and merges their part files.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from harness.flow import build_flow
from harness.recording import Recording, RecordingError, sha256_file
from harness.semantics import DetectionParams, Tally
from harness.sinks import LaneFileSink, RunOutput, collect
from harness.source import RecordingSource

ERRORS = "errors.txt"


def _first_error(run_dir: Path) -> RecordingError | None:
    log = run_dir / ERRORS
    if log.exists() and log.read_text().strip():
        return RecordingError(log.read_text().splitlines()[0])
    return None


class ClusterError(RuntimeError):
    """A member process of a local cluster failed."""


@dataclass(frozen=True)
class ReplayConfig:
    """Everything that defines one replay run."""

    recording: Path
    params: DetectionParams = field(default_factory=DetectionParams)
    workers: int = 1
    processes: int = 1
    speed: float | None = None
    batch_size: int | None = None
    console: bool = False
    recovery_dir: Path | None = None
    snapshot_interval: float = 1.0
    skip_damaged: bool = False

    def __post_init__(self) -> None:
        if not self.snapshot_interval > 0:
            raise ValueError(f"--snapshot-interval must be > 0, got {self.snapshot_interval}")
        for name in ("workers", "processes"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.speed is not None and self.speed < 0:
            raise ValueError(f"--speed must be >= 0, got {self.speed}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str)

    @classmethod
    def from_json(cls, text: str) -> ReplayConfig:
        raw = json.loads(text)
        raw["recording"] = Path(raw["recording"])
        raw["params"] = DetectionParams(**raw["params"])
        if raw["recovery_dir"] is not None:
            raw["recovery_dir"] = Path(raw["recovery_dir"])
        return cls(**raw)


@dataclass
class ReplayResult:
    """Merged output of a replay and how long it took."""

    output: RunOutput
    wall_seconds: float
    notes: list[str] = field(default_factory=list)  # cut-short tails, hash mismatches

    @property
    def tally(self) -> Tally:
        return self.output.tally

    @property
    def events_per_second(self) -> float:
        return self.tally.events / self.wall_seconds if self.wall_seconds > 0 else 0.0


def _flow(config: ReplayConfig, run_dir: Path) -> Dataflow:
    source = RecordingSource(config.recording, config.speed, config.batch_size,
                             error_log=run_dir / ERRORS, skip_damaged=config.skip_damaged)
    lanes = Recording(config.recording).lanes
    sink = LaneFileSink(run_dir, lanes, config.console)
    return build_flow(source, sink, config.params, error_log=run_dir / ERRORS, lanes=lanes,
                      workers=config.workers * config.processes)


def free_addresses(count: int) -> list[str]:
    """`count` loopback addresses with ports free right now."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]


@contextmanager
def _stderr_into(path: Path) -> Iterator[None]:
    """Send this process's fd 2 (Rust panics included) into a file for a while."""
    sys.stderr.flush()
    saved = os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _recording_error(exc: BaseException | None) -> RecordingError | None:
    while exc is not None:
        if isinstance(exc, RecordingError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _forward(log: Path) -> None:
    for line in log.read_text(errors="replace").splitlines(keepends=True):
        if not _CONNECT_RETRY.search(line):
            sys.stderr.write(line)


# Bytewax logs this while cluster members start one after the other; it is not an error.
_CONNECT_RETRY = re.compile(r"error connecting to worker \d+: .*retrying")


def execute(flow: Dataflow, run_dir: Path, workers: int, addresses: list[str] | None = None,
            process_id: int | None = None, recovery: RecoveryConfig | None = None,
            epoch_interval: float | None = None) -> None:
    """Run a flow's share in this process with Bytewax's own cluster entry point.

    A damaged recording surfaces as the `RecordingError` that names the
    place, not as Bytewax's wrapped error and a Rust panic on stderr.
    """
    log = run_dir / f"stderr-{process_id or 0}.log"
    try:
        with _stderr_into(log):
            cli_main(flow, workers_per_process=workers, process_id=process_id,
                     addresses=addresses, recovery_config=recovery,
                     epoch_interval=timedelta(seconds=epoch_interval) if epoch_interval
                     else None)
    except BaseException as exc:  # Bytewax raises PanicException, a BaseException
        cause = _recording_error(exc) or _first_error(run_dir)
        if cause is not None:
            raise cause from None
        _forward(log)
        raise
    _forward(log)


def run_member(config: ReplayConfig, run_dir: Path, addresses: list[str] | None = None,
               process_id: int | None = None) -> None:
    """Run this process's part of the cluster (all of it when no addresses)."""
    recovery = (RecoveryConfig(config.recovery_dir / "db") if config.recovery_dir is not None
                else None)
    execute(_flow(config, run_dir), run_dir, config.workers, addresses, process_id, recovery,
            config.snapshot_interval if recovery is not None else None)


def _run_cluster(config: ReplayConfig, run_dir: Path) -> None:
    addresses = free_addresses(config.processes)
    logs = [run_dir / f"process-{pid}.err" for pid in range(config.processes)]
    procs = []
    for pid, log in enumerate(logs):
        if pid:  # members connect to lower ones; started early, Bytewax retries after 1 s
            _await_listening(int(addresses[pid - 1].rsplit(":", 1)[1]), procs[-1])
        with log.open("wb") as err:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "harness.runner", config.to_json(), str(run_dir),
                 ";".join(addresses), str(pid)], stderr=err, preexec_fn=_die_with_parent))
    try:
        # One failed member makes its peers fail too; wait for all, then explain.
        while None in (codes := [p.poll() for p in procs]):  # poll every member
            if any(code not in (None, 0) for code in codes):
                _wait_all(procs, grace=3.0)
                break
            time.sleep(0.02)
    finally:
        _wait_all(procs, grace=0.0)
    error = _first_error(run_dir)
    if error is not None:
        raise error
    for log in logs:
        _forward(log)
    for pid, p in enumerate(procs):
        if p.returncode != 0:
            raise ClusterError(f"cluster process {pid} exited with {p.returncode}")


def _await_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Wait until a local TCP port is in LISTEN state (Linux /proc; else a short pause)."""
    table = Path("/proc/net/tcp")
    if not table.exists():
        time.sleep(0.5)
        return
    wanted = f":{port:04X} "
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            if (fields[1] + " ").endswith(wanted) and fields[3] == "0A":
                return
        time.sleep(0.01)


def _die_with_parent() -> None:
    """Linux: a member gets SIGKILL when the replay that started it dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _wait_all(procs: list[subprocess.Popen[bytes]], grace: float) -> None:
    """Let members finish within `grace` seconds, then end the rest by PID."""
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            terminate(p)


def terminate(proc: subprocess.Popen[Any], grace: float = 5.0) -> None:
    """End a child by its PID: SIGTERM, then SIGKILL if it is still there after `grace` s."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def replay(config: ReplayConfig, *, addresses: list[str] | None = None,
           process_id: int | None = None) -> ReplayResult:
    """Replay a recording through the detection flow and merge the outputs.

    With `addresses`, this process is member `process_id` of a cluster whose
    other members run elsewhere; the result then holds this member's share.
    """
    # fail early, with a clear error
    recording = Recording(config.recording, skip_damaged=config.skip_damaged)
    notes = _check_hashes(recording) + _scan_unfinished(recording)
    with _run_directory(config, recording) as run_dir:
        start = time.perf_counter()
        if addresses is not None or config.processes == 1:
            run_member(config, run_dir, addresses, process_id)
        else:
            _run_cluster(config, run_dir)
        wall = time.perf_counter() - start
        output = collect(run_dir)
    listed = recording.manifest.events
    if (recording.manifest.complete and addresses is None and not config.skip_damaged
            and output.tally.events != listed):
        raise RecordingError(f"{recording.directory}: the manifest lists {listed} events,"
                             f" the segments hold {output.tally.events}")
    return ReplayResult(output, wall, notes)


def _check_hashes(recording: Recording) -> list[str]:
    """sha256 of every finished segment against the manifest (cheap next to a replay)."""
    notes = []
    for index, segment in enumerate(recording.manifest.segments):
        if (segment.complete and index not in recording.missing
                and sha256_file(recording.segment_path(index)) != segment.sha256):
            note = f"{segment.file}: sha256 does not match the manifest"
            if not recording.skip_damaged:
                raise RecordingError(note)
            notes.append(note)
    return notes


RECOVERY_PARTITIONS = 4


@contextmanager
def _run_directory(config: ReplayConfig, recording: Recording) -> Iterator[Path]:
    """Where the sinks write: a temporary directory, or the recovery state's.

    A recovery directory remembers which replay made it; resuming with a
    different recording or detection parameters would mix two answers, so
    it is refused. Worker and process counts may change between runs.
    """
    if config.recovery_dir is None:
        with tempfile.TemporaryDirectory(prefix="harness-run-") as tmp:
            yield Path(tmp)
        return
    state = config.recovery_dir
    identity = {"recording": str(recording.directory.resolve()),
                "created": recording.manifest.created, "events": recording.manifest.events,
                "params": asdict(config.params)}
    marker = state / "replay.json"
    if marker.is_file():
        made_by = json.loads(marker.read_text())
        if made_by != identity:
            changed = sorted(k for k in identity if made_by.get(k) != identity[k])
            raise RecordingError(f"--recovery-dir {state}: made by a different replay"
                                 f" ({', '.join(changed)} differ); use a new directory")
    else:
        if state.exists() and (not state.is_dir() or any(state.iterdir())):
            raise RecordingError(f"--recovery-dir {state}: exists, not empty, and not a"
                                 " replay's recovery state; refusing to use it")
        # Built aside and renamed into place: a run killed while creating it
        # leaves no half-made state that the rerun would refuse.
        state.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{state.name}.", dir=state.parent))
        (staging / "db").mkdir()
        (staging / "parts").mkdir()
        init_db_dir(staging / "db", RECOVERY_PARTITIONS)
        (staging / "replay.json").write_text(json.dumps(identity))
        if state.exists():
            state.rmdir()  # empty, checked above
        os.rename(staging, state)
    yield state / "parts"


def _scan_unfinished(recording: Recording) -> list[str]:
    for index, segment in enumerate(recording.manifest.segments):
        if not segment.complete:
            for _ in recording.segment_blocks(index):
                pass
    return recording.truncated


def _member_main(argv: list[str]) -> None:
    config_json, run_dir, addresses, process_id = argv
    try:
        run_member(ReplayConfig.from_json(config_json), Path(run_dir), addresses.split(";"),
                   int(process_id))
    except RecordingError:
        os._exit(2)  # the parent reports it from the error log


if __name__ == "__main__":
    _member_main(sys.argv[1:])
