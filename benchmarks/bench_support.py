"""Shared pieces of the benchmark suite: cached recordings, a no-op sink, result rows
(measured here, printed by conftest.py, read back from the JSON by plot.py)."""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bytewax.outputs import DynamicSink, StatelessSinkPartition

import harness.recording.synth
from harness.bench.results import WallTimes, net_rate
from harness.flows.bots.reference import replay_reference
from harness.flows.bots.semantics import DetectionParams
from harness.recording import Recording, RecordingError
from harness.recording.importer import synthesize

HERE = Path(__file__).resolve().parent
DATA_DIR = Path(os.environ.get("BENCH_DATA") or HERE / ".bench-data")
BENCH_EVENTS = int(os.environ.get("BENCH_EVENTS", "200000"))
BENCH_SEED = int(os.environ.get("BENCH_SEED", "2024"))
LANES = 8
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
TINY_EVENTS = 500  # for the fixed (start-up) cost of each flow configuration
REFERENCE_ROW = "reference (plain Python)"
EXAMPLES = HERE.parent / "docs" / "examples"  # user flows, e.g. wiki_counts.py

T = TypeVar("T")


def _generator_tag() -> str:
    """Short hash of the synthesiser's source: a changed generator invalidates the cache."""
    package = Path(harness.recording.synth.__file__).parent
    source = b"".join(p.read_bytes() for p in sorted(package.glob("*.py")))
    return hashlib.sha256(source).hexdigest()[:10]


def cached_recording(events: int, seed: int = BENCH_SEED, lanes: int = LANES) -> Path:
    """A synthetic recording, generated once and kept under `DATA_DIR` (keyed by size+seed)."""
    path = DATA_DIR / f"synth-{events}-seed{seed}-lanes{lanes}-{_generator_tag()}"
    try:
        manifest = Recording(path).manifest
        if manifest.complete and manifest.events == events:
            return path
    except RecordingError:
        pass
    shutil.rmtree(path, ignore_errors=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    synthesize(tmp, events=events, seed=seed, lanes=lanes, progress=False)
    os.replace(tmp, path)  # atomic: an interrupted run leaves only a .tmp directory
    return path


class _Discard(StatelessSinkPartition[Any]):
    def __init__(self, counter: list[int]) -> None:
        self._counter = counter

    def write_batch(self, items: list[Any]) -> None:
        self._counter[0] += len(items)


class NullSink(DynamicSink[Any]):
    """A sink that drops everything; `items[0]` counts what reached it."""

    def __init__(self) -> None:
        self.items = [0]

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Discard:
        return _Discard(self.items)


@dataclass
class Row(WallTimes):
    """One line of the summary table: wall times of a stage, and the reference's beside it."""

    name: str
    events: int
    walls: list[float] = field(default_factory=list)
    reference_walls: list[float] = field(default_factory=list)  # measured interleaved
    fixed_samples: list[float] = field(default_factory=list)  # same run, tiny recording
    workers: int | None = None
    processes: int | None = None
    note: str = ""
    position: int = 0  # order in the table (run order)

    @classmethod
    def from_extra_info(cls, info: dict[str, Any]) -> Row:
        """The row back from its JSON `extra_info` (raw wall times, so the figures match)."""
        return cls(info["row"], info["events"], list(info["walls_s"]),
                   list(info["reference_walls_s"]), list(info.get("fixed_samples_s", [])),
                   info.get("workers"), info.get("processes"), info.get("note", ""),
                   info.get("position", 0))

    @property
    def reference_events_per_s(self) -> float:
        if not self.reference_walls:  # e.g. --benchmark-disable skips the setup
            return float("nan")
        return self.events / statistics.median(self.reference_walls)

    @property
    def ratio(self) -> float:
        """Throughput relative to the reference run side by side (> 1: faster)."""
        return self.events_per_s / self.reference_events_per_s

    @property
    def fixed_cost(self) -> float | None:
        """Best-case fixed cost: the fastest replay of the tiny recording.

        The minimum: start-up is the noisiest part of a small run.
        """
        return min(self.fixed_samples) if self.fixed_samples else None

    @property
    def net_events_per_s(self) -> float | None:
        """Throughput net of the fixed cost: fastest round minus best-case start-up
        (None when start-up is most of the round, see `harness.bench.net_rate`)."""
        if self.fixed_cost is None:
            return None
        return net_rate(self.events, min(self.walls), self.fixed_cost)

    @property
    def spread(self) -> float:
        """(max - min) / median of the rounds."""
        return (max(self.walls) - min(self.walls)) / self.median

    def extra_info(self) -> dict[str, Any]:
        """Rounded figures to read, and the raw wall times `from_extra_info` rebuilds from."""
        info: dict[str, Any] = {
            "row": self.name, "position": self.position, "events": self.events,
            "rounds": len(self.walls), "median_s": round(self.median, 4),
            "events_per_s": round(self.events_per_s), "spread": round(self.spread, 4),
            "reference_events_per_s": round(self.reference_events_per_s),
            "ratio_to_reference": round(self.ratio, 3),
            "walls_s": self.walls, "reference_walls_s": self.reference_walls,
        }
        if self.workers is not None:
            info["workers"], info["processes"] = self.workers, self.processes
        if self.fixed_cost is not None:
            info["fixed_cost_s"] = round(self.fixed_cost, 4)
            info["fixed_samples_s"] = self.fixed_samples
            net = self.net_events_per_s
            info["net_events_per_s"] = round(net) if net is not None else None
        if self.note:
            info["note"] = self.note
        return info


def format_table(rows: list[Row]) -> list[str]:
    """The summary table as text lines."""
    width = max([36, *(len(r.name) for r in rows)])
    head = (f"{'row':<{width}} {'events/s':>10} {'x ref':>6} {'net ev/s':>10}"
            f" {'start-up s':>11} {'median s':>9} {'spread':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        net = r.net_events_per_s
        fixed = (f"{min(r.fixed_samples):.2f}-{max(r.fixed_samples):.2f}"
                 if r.fixed_samples else "-")
        lines.append(
            f"{r.name:<{width}} {r.events_per_s:>10,.0f} {r.ratio:>6.2f}"
            f" {f'{net:,.0f}' if net is not None else '-':>10}"
            f" {fixed:>11} {r.median:>9.3f} {r.spread:>7.1%}")
    return lines


def fixed_cost_samples(run: Callable[[], Any], repeat: int = 5) -> list[float]:
    """Wall times of `run` (meant for the tiny recording)."""
    walls = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        walls.append(time.perf_counter() - start)
    return walls


def measure_row(benchmark: Any, rows: dict[str, Row], row: Row, target: Callable[[], T],
                recording: Path | None) -> list[T]:
    """Time `target` for ROUNDS rounds, the reference model running before each round.

    With `recording=None` the row is the reference itself. Returns what `target`
    returned in each round.
    """
    results: list[T] = []

    def timed() -> None:
        start = time.perf_counter()
        results.append(target())
        row.walls.append(time.perf_counter() - start)

    def interleaved_reference() -> None:
        assert recording is not None
        start = time.perf_counter()
        replay_reference(recording, DetectionParams())
        row.reference_walls.append(time.perf_counter() - start)

    benchmark.pedantic(timed, setup=None if recording is None else interleaved_reference,
                       rounds=ROUNDS, iterations=1, warmup_rounds=0)
    if recording is None:
        row.reference_walls = list(row.walls)
    row.position = len(rows)
    rows[row.name] = row
    benchmark.extra_info.update(row.extra_info())
    return results


def shape_name(flow: str, workers: int, processes: int) -> str:
    return f"{flow} {workers} worker(s) x {processes} process(es)"


def measure_flow_row(benchmark: Any, rows: dict[str, Row], row: Row,
                     run: Callable[[Path], T], recording: Path, tiny_recording: Path
                     ) -> list[T]:
    """A whole-flow row: `run` on the tiny recording for the start-up cost, then
    `measure_row` on the benchmark recording."""
    row.fixed_samples = fixed_cost_samples(lambda: run(tiny_recording))
    return measure_row(benchmark, rows, row, lambda: run(recording), recording)
