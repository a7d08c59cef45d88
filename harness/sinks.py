"""Where the flow's outputs go: per-worker part files, merged into one result.

Every worker (in every process) appends to its own files in a run
directory, so no two writers share a file and a multi-process run needs no
coordination; `collect` merges the parts once the cluster has finished.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from harness.flow import Output
from harness.semantics import DeadLetter, Tally, WindowSummary

SUMMARIES = "summaries-{:04d}.jsonl"
DEAD_LETTERS = "deadletters-{:04d}.jsonl"
TALLY = "tally-{:04d}.json"


def alert_line(summary: WindowSummary) -> str:
    """The console line for a malicious window."""
    s = summary.to_json()
    return (f"MALICIOUS {s['user']} {s['window_start']} .. {s['window_end'][11:19]}"
            f" count={s['count']} rate={s['rate']:.1f}/s")


@dataclass(frozen=True)
class PartFileSink(DynamicSink[Output]):
    """Writes summaries, dead letters and a tally per worker into `run_dir`.

    With `console`, malicious windows are printed as they close.
    """

    run_dir: Path
    console: bool = False

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _PartWriter:
        return _PartWriter(self.run_dir, worker_index, sys.stdout if self.console else None)


class _PartWriter(StatelessSinkPartition[Output]):
    def __init__(self, run_dir: Path, worker: int, console: TextIO | None) -> None:
        self._summaries = (run_dir / SUMMARIES.format(worker)).open("xb")
        self._dead = (run_dir / DEAD_LETTERS.format(worker)).open("xb")
        self._tally_path = run_dir / TALLY.format(worker)
        self._tally = Tally()
        self._console = console

    def write_batch(self, items: list[Output]) -> None:
        summaries, dead = [], []
        for item in items:
            if isinstance(item, WindowSummary):
                summaries.append(orjson.dumps(item.to_json()))
                if item.malicious and self._console is not None:
                    print(alert_line(item), file=self._console, flush=True)
            elif isinstance(item, DeadLetter):
                dead.append(orjson.dumps(item.to_json()))
            else:
                self._tally.add(item)
        if summaries:
            self._summaries.write(b"\n".join(summaries) + b"\n")
        if dead:
            self._dead.write(b"\n".join(dead) + b"\n")

    def close(self) -> None:
        self._summaries.close()
        self._dead.close()
        self._tally_path.write_bytes(orjson.dumps(self._tally.to_json()))


@dataclass
class RunOutput:
    """The merged outputs of all workers of one run."""

    summaries: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)
    workers: int = 0


def _lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def summary_order(summary: dict[str, Any]) -> tuple[str, str]:
    return summary["window_start"], summary["user"]


def collect(run_dir: Path) -> RunOutput:
    """Merge every worker's parts; summaries sorted by (window_start, user)."""
    out = RunOutput()
    for path in sorted(run_dir.glob("tally-*.json")):
        out.tally.add(Tally(**orjson.loads(path.read_bytes())))
        out.workers += 1
    for path in sorted(run_dir.glob("summaries-*.jsonl")):
        out.summaries.extend(_lines(path))
    for path in sorted(run_dir.glob("deadletters-*.jsonl")):
        out.dead_letters.extend(_lines(path))
    out.summaries.sort(key=summary_order)
    out.dead_letters.sort(key=lambda d: d["seq"])
    return out
