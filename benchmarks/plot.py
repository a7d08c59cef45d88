"""Events/s per row from a pytest-benchmark JSON file of this suite.

    python benchmarks/plot.py benchmarks/results/example.json --out benchmarks/scaling.png

One bar per row of the summary table, in its order: the median events/s, with
error bars from the slowest to the fastest round. The vertical line is the
reference row's events/s, the very figure the table prints: the rows are
rebuilt from their raw wall times (`extra_info`) with the same `Row` code.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib
from bench_support import REFERENCE_ROW, Row

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the backend
from matplotlib.ticker import FuncFormatter

COLOURS = {"stages": "#8c8c8c", "flow": "#4c72b0", "user flow": "#55a868",
           "recorder": "#c44e52", REFERENCE_ROW: "#dd8452"}


def table_rows(data: dict[str, Any]) -> list[tuple[str, Row]]:
    """(benchmark group, row) of every timed row, in table order."""
    found = [(bench["group"], Row.from_extra_info(bench["extra_info"]))
             for bench in data["benchmarks"] if "walls_s" in bench.get("extra_info", {})]
    return sorted(found, key=lambda item: item[1].position)


def plot(data: dict[str, Any], out: Path) -> None:
    found = table_rows(data)
    if not found:
        raise SystemExit("no rows (extra_info with walls_s) in the JSON: is it from this"
                         " suite, run without --benchmark-disable?")
    rows = [row for _, row in found]
    medians = [row.events_per_s for row in rows]
    lows, highs = zip(*(row.events_per_s_range for row in rows), strict=True)
    errors = [[m - lo for m, lo in zip(medians, lows, strict=True)],
              [hi - m for m, hi in zip(medians, highs, strict=True)]]
    ys = range(len(rows))
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(rows) + 1.6))
    colours = [COLOURS.get(row.name, COLOURS.get(group, "#937860")) for group, row in found]
    ax.barh(ys, medians, xerr=errors, capsize=3, color=colours)
    for y, row, high in zip(ys, rows, highs, strict=True):
        ax.annotate(f"{row.events_per_s:,.0f}  x{row.ratio:.2f}", (high, y),
                    textcoords="offset points", xytext=(7, 0), va="center", fontsize=8)
    reference = next((row for row in rows if row.name == REFERENCE_ROW), None)
    if reference is not None:
        ax.axvline(reference.events_per_s, color="tab:red", linestyle=":",
                   label=f"{REFERENCE_ROW}: {reference.events_per_s:,.0f} events/s"
                         " (x ref: against the reference runs interleaved with each row)")
        ax.legend(fontsize=8, loc="lower right")
    else:
        print(f"plot: no {REFERENCE_ROW!r} row in the JSON; no reference line")
    ax.set_yticks(list(ys), [row.name for row in rows], fontsize=8)
    ax.invert_yaxis()  # table order, top to bottom
    ax.set_xlim(0, 1.2 * max(highs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:,.0f}k"))
    ax.set_xlabel("events / s (median of rounds; bars: slowest to fastest round;"
                  " label: events/s and x ref)")
    ax.grid(axis="x", alpha=0.3)
    cpus = data.get("machine_info", {}).get("cpu", {}).get("count", "?")
    ax.set_title(f"In-process throughput, {rows[0].events:,} synthetic events,"
                 f" {len(rows[0].walls)} rounds, {cpus} cores"
                 f" ({data.get('datetime', '')[:10]})", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="pytest-benchmark JSON (--benchmark-json)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/scaling.png"))
    args = parser.parse_args(argv)
    plot(json.loads(args.results.read_text()), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
