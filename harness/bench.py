"""`harness bench`: throughput per cluster shape, measured side by side, whole processes.

Every figure is the wall time of a whole `harness replay` process (start-up,
imports and cluster connect included), run in rounds that interleave every
shape with a *plain loop*: one Python thread that streams the recording's
segments through zstd and parses every line with orjson (and, for the bot
flow, detects with the same rules, `reference.plain_loop`). Ratios compare
runs made at the same time on a noisy machine; the median of the rounds is
reported with min and max. "Net of start-up" subtracts the median wall time
of the same shape on a tiny recording (the first events of the same one).
"""

from __future__ import annotations

import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import zstandard

from harness.errors import HarnessError
from harness.recording.reader import Recording

__all__ = ["BenchPlan", "BenchResults", "Measured", "net_rate", "plain_read", "run_bench"]

TINY_EVENTS = 200
RUN_TIMEOUT = 3600.0  # a safety stop for one process, not a threshold


@dataclass(frozen=True)
class BenchPlan:
    """What to measure: a flow (None: bot detection) over a recording, per shape."""

    recording: Path
    flow: str | None = None
    key: str = "user"
    partitions: int | None = None
    workers: Sequence[int] = (1, 2, 4)
    processes: Sequence[int] = (1, 2)
    rounds: int = 3
    extra_args: tuple[str, ...] = ()

    @property
    def shapes(self) -> list[tuple[int, int]]:
        return [(w, p) for p in self.processes for w in self.workers]

    def command(self, recording: Path, workers: int, processes: int) -> list[str]:
        cmd = [sys.executable, "-m", "harness", "replay", str(recording), "--quiet", "--json",
               "--workers", str(workers), "--processes", str(processes), *self.extra_args]
        if self.flow not in (None, "bots"):
            cmd += ["--flow", self.flow, "--key", self.key]
            if self.partitions is not None:
                cmd += ["--partitions", str(self.partitions)]
        return cmd

    def baseline_command(self, recording: Path) -> list[str]:
        kind = "detect" if self.flow in (None, "bots") else "read"
        return [sys.executable, "-m", "harness.bench", kind, str(recording)]


def net_rate(events: int, wall: float, fixed: float) -> float | None:
    """Events per second of `wall` with a `fixed` cost (start-up) taken off; None when
    the fixed cost leaves under a quarter of the wall for the work, where the
    difference of two noisy times would mean nothing."""
    work = wall - fixed
    return None if work < 0.25 * wall else events / work


@dataclass
class Measured:
    """Wall times of one row (whole processes), and of the same row on the tiny recording."""

    name: str
    events: int
    workers: int | None = None
    processes: int | None = None
    walls: list[float] = field(default_factory=list)
    tiny_walls: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.walls)

    @property
    def events_per_s(self) -> float:
        return self.events / self.median

    @property
    def startup(self) -> float | None:
        return statistics.median(self.tiny_walls) if self.tiny_walls else None

    @property
    def net_events_per_s(self) -> float | None:
        """Throughput with the start-up (tiny-recording wall) taken off the median."""
        return None if self.startup is None else net_rate(self.events, self.median,
                                                          self.startup)

    def to_json(self, baseline: Measured | None) -> dict[str, Any]:
        row: dict[str, Any] = {
            "name": self.name, "events": self.events, "workers": self.workers,
            "processes": self.processes, "walls_s": [round(w, 4) for w in self.walls],
            "median_s": round(self.median, 4), "min_s": round(min(self.walls), 4),
            "max_s": round(max(self.walls), 4), "events_per_s": round(self.events_per_s),
        }
        if self.startup is not None:
            row["startup_s"] = round(self.startup, 4)
            net = self.net_events_per_s
            row["net_events_per_s"] = round(net) if net is not None else None
        if baseline is not None:
            row["ratio_to_plain_loop"] = round(baseline.median / self.median, 3)
        return row


@dataclass
class BenchResults:
    plan: BenchPlan
    baseline: Measured
    rows: list[Measured]

    def to_json(self) -> dict[str, Any]:
        return {
            "recording": str(self.plan.recording), "flow": self.plan.flow or "bot detection",
            "key": self.plan.key, "rounds": self.plan.rounds, "python": sys.version.split()[0],
            "cpus": os.cpu_count(), "baseline": self.baseline.to_json(None),
            "rows": [row.to_json(self.baseline) for row in self.rows],
        }

    def table(self) -> list[str]:
        head = (f"{'shape':<24} {'events/s':>10} {'min-max s':>13} {'x plain':>8}"
                f" {'start-up s':>10} {'net ev/s':>10}")
        lines = [f"{self.plan.flow or 'bot detection'} on {self.plan.recording}"
                 f" ({self.baseline.events:,} events, median of {self.plan.rounds} rounds,"
                 " whole processes)", head, "-" * len(head)]
        for row in [self.baseline, *self.rows]:
            net = row.net_events_per_s
            ratio = self.baseline.median / row.median
            lines.append(
                f"{row.name:<24} {row.events_per_s:>10,.0f}"
                f" {f'{min(row.walls):.2f}-{max(row.walls):.2f}':>13} {ratio:>8.2f}"
                f" {f'{row.startup:.2f}' if row.startup is not None else '-':>10}"
                f" {f'{net:,.0f}' if net is not None else '-':>10}")
        return lines

    def plot_png(self) -> bytes:
        """Events/s per shape (median, min-max bars) and the plain loop's line."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise HarnessError("--plot needs matplotlib: pip install"
                               " 'wikistream-harness[bench]'") from None
        fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
        names = [row.name for row in self.rows]
        medians = [row.events_per_s for row in self.rows]
        lows = [row.events / max(row.walls) for row in self.rows]
        highs = [row.events / min(row.walls) for row in self.rows]
        errors = [[m - lo for m, lo in zip(medians, lows, strict=True)],
                  [hi - m for m, hi in zip(medians, highs, strict=True)]]
        ax.bar(names, medians, yerr=errors, capsize=4, color="#4c72b0", label="harness replay")
        nets = [row.net_events_per_s for row in self.rows]
        ax.scatter([n for n, v in zip(names, nets, strict=True) if v is not None],
                   [v for v in nets if v is not None], marker="_", s=400, color="#dd8452",
                   label="net of start-up", zorder=3)
        ax.axhline(self.baseline.events_per_s, color="#55a868", linestyle="--",
                   label=f"plain loop ({self.baseline.events_per_s:,.0f}/s)")
        ax.set_ylabel("events per second (whole process)")
        ax.set_title(f"{self.plan.flow or 'bot detection'}: {self.baseline.events:,} events,"
                     f" median of {self.plan.rounds}, min-max bars", fontsize=10)
        ax.legend(fontsize=8)
        plt.setp(ax.get_xticklabels(), rotation=20, ha="right", fontsize=8)
        fig.tight_layout()
        out = io.BytesIO()
        fig.savefig(out, format="png")
        plt.close(fig)
        return out.getvalue()


def _timed(cmd: list[str]) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, timeout=RUN_TIMEOUT, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        error = proc.stderr.decode(errors="replace").strip().splitlines()
        raise HarnessError(f"bench: {' '.join(cmd[3:7])}... failed (exit {proc.returncode}):"
                           f" {error[-1] if error else 'no message'}")
    lines = proc.stdout.decode().strip().splitlines()
    return wall, (orjson.loads(lines[-1]) if lines else {})


def tiny_copy(recording: Path, directory: Path, events: int = TINY_EVENTS) -> Path:
    """A recording of the first `events` events of `recording` (same lanes)."""
    from harness.recording.writer import RecordingWriter

    source = Recording(recording)
    with RecordingWriter(directory, source="bench:tiny", lanes=source.lanes) as writer:
        for n, env in enumerate(source.envelopes()):
            if n >= events:
                break
            payload = orjson.dumps(env.data) if env.is_json else (env.raw or "")
            writer.append(payload, env.id, env.recv)
    return directory


def run_bench(plan: BenchPlan, progress: Callable[[str], None] | None = None) -> BenchResults:
    """Measure every shape and the plain loop, interleaved, `plan.rounds` times."""
    events = Recording(plan.recording).manifest.events
    baseline = Measured("plain loop (1 thread)", events)
    rows = [Measured(f"{w} worker{'s' if w > 1 else ''} x {p} process{'es' if p > 1 else ''}",
                     events, w, p) for w, p in plan.shapes]
    work = Path(tempfile.mkdtemp(prefix="harness-bench-"))
    try:
        tiny = tiny_copy(plan.recording, work / "tiny")
        for round_ in range(plan.rounds):
            wall, _ = _timed(plan.baseline_command(plan.recording))
            baseline.walls.append(wall)
            for row in rows:
                assert row.workers is not None and row.processes is not None
                wall, summary = _timed(plan.command(plan.recording, row.workers, row.processes))
                read = summary.get("events", summary.get("read"))
                if read is not None and read != events:
                    raise HarnessError(f"bench: {row.name} read {read} events, the recording"
                                       f" holds {events}")
                row.walls.append(wall)
                row.tiny_walls.append(_timed(plan.command(tiny, row.workers,
                                                          row.processes))[0])
                if progress is not None:
                    progress(f"round {round_ + 1}/{plan.rounds}: {row.name}: {wall:.2f} s"
                             f" (plain loop {baseline.walls[-1]:.2f} s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return BenchResults(plan, baseline, rows)


def plain_read(path: Path) -> int:
    """The plain loop without detection: stream every segment through zstd and parse
    every line with orjson, in one thread. Returns the number of lines."""
    recording = Recording(path)
    count = 0
    for index in range(len(recording.manifest.segments)):
        with recording.segment_path(index).open("rb") as f:
            reader = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
            for line in io.BufferedReader(reader, 1 << 20):
                orjson.loads(line)
                count += 1
    return count


def _main(argv: list[str]) -> None:
    kind, path = argv
    if kind == "read":
        print(orjson.dumps({"events": plain_read(Path(path))}).decode())
    else:
        from harness.flows.bots.reference import plain_loop
        from harness.flows.bots.semantics import DetectionParams

        tally = plain_loop(Path(path), DetectionParams())
        print(orjson.dumps(tally.to_json()).decode())


if __name__ == "__main__":
    _main(sys.argv[1:])
