"""Running the flow over a recording: in this process or as a local Bytewax cluster.

`replay()` is the library entry point behind `harness replay`. With
`processes > 1` it starts that many `python -m harness.runner` processes,
each a member of one Bytewax cluster (Bytewax's own `cli_main` with a
localhost address list, exactly what `python -m bytewax.run -i/-a` does),
waits for them, and merges their part files.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bytewax._bytewax import cli_main

from harness.flow import build_flow
from harness.recording import Recording
from harness.semantics import DetectionParams, Tally
from harness.sinks import PartFileSink, RunOutput, collect
from harness.source import RecordingSource


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

    def __post_init__(self) -> None:
        for name in ("workers", "processes"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.speed is not None and self.speed < 0:
            raise ValueError(f"--speed must be >= 0, got {self.speed}")

    def to_json(self) -> str:
        raw = asdict(self)
        raw["recording"] = str(self.recording)
        return json.dumps(raw)

    @classmethod
    def from_json(cls, text: str) -> ReplayConfig:
        raw = json.loads(text)
        raw["recording"] = Path(raw["recording"])
        raw["params"] = DetectionParams(**raw["params"])
        return cls(**raw)


@dataclass
class ReplayResult:
    """Merged output of a replay and how long it took."""

    output: RunOutput
    wall_seconds: float
    truncated: list[str] = field(default_factory=list)

    @property
    def tally(self) -> Tally:
        return self.output.tally

    @property
    def events_per_second(self) -> float:
        return self.tally.events / self.wall_seconds if self.wall_seconds > 0 else 0.0


def _flow(config: ReplayConfig, run_dir: Path):
    source = RecordingSource(config.recording, config.speed, config.batch_size)
    return build_flow(source, PartFileSink(run_dir, config.console), config.params)


def free_addresses(count: int) -> list[str]:
    """`count` loopback addresses with ports free right now."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]


def run_member(config: ReplayConfig, run_dir: Path, addresses: list[str] | None = None,
               process_id: int | None = None) -> None:
    """Run this process's part of the cluster (all of it when no addresses)."""
    cli_main(_flow(config, run_dir), workers_per_process=config.workers,
             process_id=process_id, addresses=addresses)


def _run_cluster(config: ReplayConfig, run_dir: Path) -> None:
    addresses = free_addresses(config.processes)
    procs = [
        subprocess.Popen([sys.executable, "-m", "harness.runner", config.to_json(),
                          str(run_dir), ";".join(addresses), str(pid)])
        for pid in range(config.processes)
    ]
    try:
        while any(p.poll() is None for p in procs):
            failed = [p for p in procs if p.returncode not in (None, 0)]
            if failed:
                raise ClusterError(
                    f"cluster process {procs.index(failed[0])} exited with {failed[0].returncode}")
            time.sleep(0.02)
        failed = [p for p in procs if p.returncode != 0]
        if failed:
            raise ClusterError(
                f"cluster process {procs.index(failed[0])} exited with {failed[0].returncode}")
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    os.kill(p.pid, signal.SIGKILL)
                    p.wait()


def replay(config: ReplayConfig) -> ReplayResult:
    """Replay a recording through the detection flow and merge the outputs."""
    recording = Recording(config.recording)  # fail early, with a clear error
    truncated = _scan_unfinished(recording)
    with tempfile.TemporaryDirectory(prefix="harness-run-") as tmp:
        run_dir = Path(tmp)
        start = time.perf_counter()
        if config.processes == 1:
            run_member(config, run_dir)
        else:
            _run_cluster(config, run_dir)
        wall = time.perf_counter() - start
        output = collect(run_dir)
    return ReplayResult(output, wall, truncated)


def _scan_unfinished(recording: Recording) -> list[str]:
    for index, segment in enumerate(recording.manifest.segments):
        if not segment.complete:
            for _ in recording.segment_blocks(index):
                pass
    return recording.truncated


def _member_main(argv: list[str]) -> None:
    config_json, run_dir, addresses, process_id = argv
    run_member(ReplayConfig.from_json(config_json), Path(run_dir), addresses.split(";"),
               int(process_id))


if __name__ == "__main__":
    _member_main(sys.argv[1:])
