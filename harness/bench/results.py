"""What `harness bench` measures and reports: the plan (rows per shape, and the
commands each row runs), one row's walls (`Measured`), and the results as a table,
JSON and a plot (`BenchResults`)."""

from __future__ import annotations

import io
import os
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.store.location import location

__all__ = ["BenchPlan", "BenchResults", "Measured", "WallTimes", "net_rate"]


@dataclass(frozen=True)
class BenchPlan:
    """What to measure: a flow over a recording, per shape."""

    recording: Path
    flow: str = "bots"
    key: str = "user"
    partitions: int | None = None
    workers: Sequence[int] = (1, 2, 4)
    processes: Sequence[int] = (1, 2)
    rounds: int = 3
    extra_args: tuple[str, ...] = ()

    @property
    def shapes(self) -> list[tuple[int, int]]:
        return [(w, p) for p in self.processes for w in self.workers]

    @property
    def payloads(self) -> bool:
        """Whether the flow reads payloads (then it gets the naive and pass-through rows)."""
        from harness.flows.contract import CHUNKS, registered

        kind = registered(self.flow)
        return kind is None or kind.input != CHUNKS

    def command(self, recording: Path, workers: int, processes: int,
                flow: str | None = None) -> list[str]:
        cmd = [sys.executable, "-m", "harness", "replay", str(location(recording)), "--quiet",
               "--json",
               "--workers", str(workers), "--processes", str(processes), *self.extra_args,
               "--flow", flow or self.flow]
        if self.payloads:
            cmd += ["--key", self.key]
            if self.partitions is not None:
                cmd += ["--partitions", str(self.partitions)]
        return cmd

    def baseline_command(self, recording: Path) -> list[str]:
        return [sys.executable, "-m", "harness.bench", "read" if self.payloads else "detect",
                str(location(recording))]

    def naive_command(self, payloads: Path, out: Path) -> list[str]:
        return [sys.executable, "-m", "harness.bench", "naive", str(payloads), self.flow,
                self.key, str(out)]


def net_rate(events: int, wall: float, fixed: float) -> float | None:
    """Events per second of `wall` with a `fixed` cost (start-up) taken off; None when
    the fixed cost leaves under a quarter of the wall for the work, where the
    difference of two noisy times would mean nothing."""
    work = wall - fixed
    return None if work < 0.25 * wall else events / work


class WallTimes:
    """Events per second from the wall times of whole runs of `events` events."""

    events: int
    walls: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.walls)

    @property
    def events_per_s(self) -> float:
        return self.events / self.median

    @property
    def events_per_s_range(self) -> tuple[float, float]:
        """Events/s of the slowest and of the fastest round."""
        return self.events / max(self.walls), self.events / min(self.walls)


@dataclass
class Measured(WallTimes):
    """Wall times of one row (whole processes), and of the same row on the tiny recording."""

    name: str
    events: int
    workers: int | None = None
    processes: int | None = None
    kind: str = "flow"  # flow | passthrough | plain loop | naive bytewax | pair
    walls: list[float] = field(default_factory=list)
    tiny_walls: list[float] = field(default_factory=list)

    @property
    def startup(self) -> float | None:
        return statistics.median(self.tiny_walls) if self.tiny_walls else None

    @property
    def net_events_per_s(self) -> float | None:
        """Throughput with the start-up (tiny-recording wall) taken off the median."""
        return None if self.startup is None else net_rate(self.events, self.median,
                                                          self.startup)

    def to_json(self, results: BenchResults | None) -> dict[str, Any]:
        row: dict[str, Any] = {
            "name": self.name, "kind": self.kind, "events": self.events,
            "workers": self.workers, "processes": self.processes,
            "walls_s": [round(w, 4) for w in self.walls], "median_s": round(self.median, 4),
            "min_s": round(min(self.walls), 4), "max_s": round(max(self.walls), 4),
            "events_per_s": round(self.events_per_s),
        }
        if self.startup is not None:
            row["startup_s"] = round(self.startup, 4)
            net = self.net_events_per_s
            row["net_events_per_s"] = round(net) if net is not None else None
        if results is not None:
            row["ratio_to_plain_loop"] = round(results.baseline.median / self.median, 3)
            if results.naive is not None:
                row["ratio_to_naive_bytewax"] = round(results.naive.median / self.median, 3)
            share = results.of_ceiling(self)
            if share is not None:
                row["share_of_ceiling"] = round(share, 3)
            flow_share = results.flow_share(self)
            if flow_share is not None:
                row["flow_share"] = round(flow_share, 3)
        return row


@dataclass
class BenchResults:
    plan: BenchPlan
    baseline: Measured
    rows: list[Measured]
    naive: Measured | None = None
    pair: Measured | None = None

    def row(self, workers: int, processes: int, kind: str = "flow") -> Measured | None:
        return next((r for r in self.rows if (r.workers, r.processes, r.kind)
                     == (workers, processes, kind)), None)

    @property
    def ceiling(self) -> dict[str, float] | None:
        """What two processes can reach on this machine (see the module doc)."""
        one = self.row(1, 1)
        if self.pair is None or one is None or one.startup is None:
            return None
        t1, s = one.median, one.startup
        m = self.pair.median / t1
        return {"T1_s": round(t1, 4), "startup_s": round(s, 4), "mutual_slowdown": round(m, 3),
                "speedup": round(t1 / (s + (t1 - s) / 2 * m), 3)}

    def of_ceiling(self, row: Measured) -> float | None:
        """A two-process flow row's speed-up over one worker, as a share of the ceiling."""
        ceiling, one = self.ceiling, self.row(1, 1)
        if ceiling is None or one is None or row.processes != 2 or row.kind != "flow":
            return None
        return one.median / row.median / ceiling["speedup"]

    def flow_share(self, row: Measured) -> float | None:
        """The share of a flow row's wall time that the pass-through does not spend."""
        if row.kind != "flow" or row.workers is None or row.processes is None:
            return None
        passing = self.row(row.workers, row.processes, "passthrough")
        return None if passing is None else 1 - passing.median / row.median

    def to_json(self) -> dict[str, Any]:
        return {
            "recording": str(location(self.plan.recording)), "flow": self.plan.flow,
            "key": self.plan.key, "rounds": self.plan.rounds, "python": sys.version.split()[0],
            "cpus": os.cpu_count(), "baseline": self.baseline.to_json(None),
            "naive_bytewax": self.naive.to_json(self) if self.naive is not None else None,
            "ceiling": self.ceiling,
            "rows": [row.to_json(self) for row in self.rows],
        }

    def table(self) -> list[str]:
        naive = self.naive is not None
        head = (f"{'shape':<28} {'events/s':>10} {'min-max s':>13} {'x plain':>8}"
                + (f" {'x naive':>8}" if naive else "")
                + f" {'start-up s':>10} {'net ev/s':>10}  notes")
        where = location(self.plan.recording)
        lines = [f"{self.plan.flow} on {where} ({self.baseline.events:,} events,"
                 f" median of {self.plan.rounds} rounds, whole processes)", head,
                 "-" * len(head)]
        for row in [self.baseline, *([self.naive] if self.naive else []), *self.rows]:
            net = row.net_events_per_s
            notes = []
            share, flow_share = self.of_ceiling(row), self.flow_share(row)
            if share is not None:
                notes.append(f"{share:.0%} of the ceiling")
            if flow_share is not None:
                notes.append(f"flow's share {flow_share:.0%}")
            lines.append(
                f"{row.name:<28} {row.events_per_s:>10,.0f}"
                f" {f'{min(row.walls):.2f}-{max(row.walls):.2f}':>13}"
                f" {self.baseline.median / row.median:>8.2f}"
                + (f" {self.naive.median / row.median:>8.2f}" if self.naive else "")
                + f" {f'{row.startup:.2f}' if row.startup is not None else '-':>10}"
                f" {f'{net:,.0f}' if net is not None else '-':>10}  {', '.join(notes)}"
                .rstrip())
        ceiling = self.ceiling
        if ceiling is not None:
            lines.append(f"ceiling for 2 processes: {ceiling['speedup']:.2f}x one worker"
                         f" (T1 {ceiling['T1_s']:.2f} s, start-up {ceiling['startup_s']:.2f} s,"
                         f" cores' mutual slowdown {ceiling['mutual_slowdown']:.2f} from two"
                         " one-worker replays at once)")
        return lines

    def plot_png(self) -> bytes:
        """Events/s per shape (median, min-max bars) and the reference rows' lines."""
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
        colors = ["#c44e52" if row.kind == "passthrough" else "#4c72b0" for row in self.rows]
        ax.bar(names, medians, yerr=errors, capsize=4, color=colors, label="harness replay")
        nets = [row.net_events_per_s for row in self.rows]
        ax.scatter([n for n, v in zip(names, nets, strict=True) if v is not None],
                   [v for v in nets if v is not None], marker="_", s=400, color="#dd8452",
                   label="net of start-up", zorder=3)
        ax.axhline(self.baseline.events_per_s, color="#55a868", linestyle="--",
                   label=f"plain loop ({self.baseline.events_per_s:,.0f}/s)")
        if self.naive is not None:
            ax.axhline(self.naive.events_per_s, color="#8172b2", linestyle=":",
                       label=f"naive Bytewax ({self.naive.events_per_s:,.0f}/s)")
        ax.set_ylabel("events per second (whole process)")
        ax.set_title(f"{self.plan.flow}: {self.baseline.events:,} events,"
                     f" median of {self.plan.rounds}, min-max bars", fontsize=10)
        ax.legend(fontsize=8)
        plt.setp(ax.get_xticklabels(), rotation=20, ha="right", fontsize=8)
        fig.tight_layout()
        out = io.BytesIO()
        fig.savefig(out, format="png")
        plt.close(fig)
        return out.getvalue()
