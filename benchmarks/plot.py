"""Scaling plot from a pytest-benchmark JSON file of this suite.

    python benchmarks/plot.py benchmarks/results/latest.json --out benchmarks/scaling.png

Left: events/s against worker threads (one process). Right: events/s against
processes (one worker each). Solid: raw wall time; dashed: net of the fixed
start-up cost. The reference model (plain Python, measured interleaved with
the flow rows) is the horizontal line.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the backend
from matplotlib.ticker import FuncFormatter


def flow_points(data: dict[str, Any]) -> dict[tuple[int, int], dict[str, Any]]:
    """extra_info of the flow rows, by (workers, processes)."""
    points = {}
    for bench in data["benchmarks"]:
        info = bench.get("extra_info", {})
        if "workers" in info:
            points[(info["workers"], info["processes"])] = info
    return points


def _series(points: dict[tuple[int, int], dict[str, Any]], along: str
            ) -> tuple[list[int], list[float], list[float | None]]:
    keep = sorted((k, v) for k, v in points.items()
                  if (k[1] == 1 if along == "workers" else k[0] == 1))
    xs = [k[0] if along == "workers" else k[1] for k, _ in keep]
    return xs, [v["events_per_s"] for _, v in keep], [v.get("net_events_per_s") for _, v in keep]


def plot(data: dict[str, Any], out: Path) -> None:
    points = flow_points(data)
    if not points:
        raise SystemExit("no flow rows (extra_info with workers/processes) in the JSON")
    reference = statistics.median(v["reference_events_per_s"] for v in points.values())
    events = next(iter(points.values()))["events"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, along in zip(axes, ("workers", "processes"), strict=True):
        xs, raw, net = _series(points, along)
        ax.plot(xs, raw, "o-", color="tab:blue", label="flow, raw wall time")
        net_xy = [(x, n) for x, n in zip(xs, net, strict=True) if n is not None]
        if net_xy:
            ax.plot(*zip(*net_xy, strict=True), "s--", color="tab:blue", alpha=0.6,
                    label="flow, net of start-up")
        for x, y in zip(xs, raw, strict=True):
            ax.annotate(f"{y / 1000:.0f}k", (x, y), textcoords="offset points", xytext=(0, 7),
                        ha="center", fontsize=8)
        ax.axhline(reference, color="tab:red", linestyle=":",
                   label=f"reference model, run alongside ({reference / 1000:.0f}k/s)")
        if along == "processes" and (2, 2) in points:
            p22 = points[(2, 2)]
            ax.plot([2], [p22["events_per_s"]], "^", color="tab:green",
                    label="2 workers x 2 processes")
        ax.set_xticks(xs)
        ax.set_xlabel("worker threads (1 process)" if along == "workers"
                      else "processes (1 worker each)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    axes[0].set_ylabel("events / s")
    top = max(max(v["events_per_s"], v.get("net_events_per_s") or 0) for v in points.values())
    axes[0].set_ylim(0, 1.15 * max(top, reference))
    axes[0].yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y / 1000:.0f}k"))
    machine = data.get("machine_info", {})
    cpus = machine.get("cpu", {}).get("count", "?")
    fig.suptitle(f"Replay throughput, {events:,} synthetic events, {cpus} cores"
                 f" (median of rounds; {data.get('datetime', '')[:10]})")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="pytest-benchmark JSON (--benchmark-json)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/scaling.png"))
    args = parser.parse_args(argv)
    plot(json.loads(args.results.read_text()), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
