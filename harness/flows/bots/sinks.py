"""Where the bot flow's outputs go: per-lane part files in the run directory.

Every lane's outputs go to that lane's own files in a run directory, so no
two writers share a file and a multi-process run needs no coordination;
`BotDetection.collect` merges the parts once the cluster has finished.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import BinaryIO, TextIO

import orjson
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from harness.files import Counters, write_atomically
from harness.flows.bots.flow import Report
from harness.flows.bots.routing import LanePlan
from harness.flows.bots.semantics import Tally, WindowSummary
from harness.recording.lanes import lane_index, lane_name

SUMMARIES = "summaries-{}.jsonl"
DEAD_LETTERS = "deadletters-{}.jsonl"
TALLY = "tally-{}.json"
TALLY_FIELDS = tuple(f.name for f in fields(Tally))
LIVE = "live-{}.bin"  # each partition's running counts (for progress and Ctrl-C)


def alert_line(summary: WindowSummary) -> str:
    """The console line for a malicious window."""
    s = summary.to_json()
    return (f"MALICIOUS {s['user']} {s['window_start']} .. {s['window_end'][11:19]}"
            f" count={s['count']} rate={s['rate']:.1f}/s")


@dataclass(frozen=True)
class SinkPosition:
    """Resume state of one lane's output: file sizes and counts at the last snapshot."""

    summaries: int = 0
    dead_letters: int = 0
    tally: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class LaneFileSink(FixedPartitionedSink[Report, SinkPosition]):
    """One partition per lane, each appending to its own files in `run_dir`.

    Exactly once under Bytewax recovery: a resumed partition cuts its files
    back to the sizes of the last snapshot, so whatever the crashed run wrote
    after it (and the resumed run writes again) appears once. With
    `console`, malicious windows are printed as they close.
    """

    run_dir: Path
    plan: LanePlan
    console: bool = False

    def list_parts(self) -> list[str]:
        return [lane_name(slot) for slot in range(len(self.plan.lanes))]

    def part_fn(self, item_key: str) -> int:
        return self.plan.slot_of[lane_index(item_key)]  # the slot that reads the key's lane

    def build_part(self, step_id: str, for_part: str,
                   resume_state: SinkPosition | None) -> _LaneWriter:
        return _LaneWriter(self.run_dir, for_part, resume_state or SinkPosition(),
                           sys.stdout if self.console else None)


def _reopen(path: Path, size: int) -> BinaryIO:
    f = path.open("ab")
    f.truncate(size)
    return f


class _LaneWriter(StatefulSinkPartition[Report, SinkPosition]):
    def __init__(self, run_dir: Path, part: str, start: SinkPosition,
                 console: TextIO | None) -> None:
        self._summaries = _reopen(run_dir / SUMMARIES.format(part), start.summaries)
        self._dead = _reopen(run_dir / DEAD_LETTERS.format(part), start.dead_letters)
        self._tally_path = run_dir / TALLY.format(part)
        self._tally = Tally(**dict(start.tally))
        self._live = Counters(run_dir / LIVE.format(part), TALLY_FIELDS)
        self._console = console

    def write_batch(self, reports: list[Report]) -> None:
        summaries, dead = [], []
        for report in reports:
            self._tally.add(report.tally)
            for item in report.items:
                if isinstance(item, WindowSummary):
                    summaries.append(orjson.dumps(item.to_json()))
                    if item.malicious and self._console is not None:
                        print(alert_line(item), file=self._console, flush=True)
                else:
                    dead.append(orjson.dumps(item.to_json()))
        if summaries:
            self._summaries.write(b"\n".join(summaries) + b"\n")
        if dead:
            self._dead.write(b"\n".join(dead) + b"\n")
        self._live.update(self._tally.to_json())

    def snapshot(self) -> SinkPosition:
        self._summaries.flush()
        self._dead.flush()
        self._write_tally()
        return SinkPosition(self._summaries.tell(), self._dead.tell(),
                            tuple(self._tally.to_json().items()))

    def _write_tally(self) -> None:
        write_atomically(self._tally_path, [orjson.dumps(self._tally.to_json())])

    def close(self) -> None:
        self._summaries.close()
        self._dead.close()
        self._write_tally()
        self._live.close()


def live_tally(run_dir: Path) -> Tally:
    """What all workers have counted so far, while the run goes on."""
    return Tally(**Counters.read(sorted(run_dir.glob(LIVE.format("*"))), TALLY_FIELDS))


def read_tally(run_dir: Path) -> Tally:
    """The counts of a finished run, summed over every lane's part."""
    tally = Tally()
    for path in sorted(run_dir.glob(TALLY.format("*"))):
        tally.add(Tally(**orjson.loads(path.read_bytes())))
    return tally
