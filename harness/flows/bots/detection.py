"""Bot detection as a flow of the contract: `--flow bots`, what `harness replay` runs.

Its input is `CHUNKS`: the raw envelope lines of the recording's own lanes
(by `user`), which it decodes inside its detect step, so only raw lines
ever cross an exchange. A `LanePlan` puts each lane on a worker and keys
the lane's batches to that worker. Its items are the window summaries, in
`(window_start, user)` order; its counts the detection `Tally`; its
parameters the `DetectionParams` (`--window`, `--lateness`, ...).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from harness.errors import ERRORS, RecordingError
from harness.flows.bots.semantics import ALIGN_2023, DetectionParams, Tally
from harness.flows.contract import CHUNKS, Flow, FlowOutput

# The command line declares every registered flow's options, for every command: what
# runs the flow (Bytewax, the lane machinery) is imported only when it runs.
if TYPE_CHECKING:
    from bytewax.dataflow import Dataflow
    from bytewax.inputs import Source

    from harness.flows.bots.routing import LanePlan
    from harness.flows.job import FlowJob
    from harness.recording.integrity import SegmentCheck
    from harness.recording.reader import Recording

__all__ = ["BotDetection"]

STATE_FORMAT: Final = 2  # of the detectors' recovery snapshots


def summary_order(line: bytes) -> tuple[str, str]:
    """Window summaries are written by window start, then user."""
    summary = orjson.loads(line)
    return summary["window_start"], summary["user"]


class BotDetection(Flow):
    """Edits keyed by user, event-time windows, fast accounts flagged."""

    name = "bots"
    input = CHUNKS

    def __init__(self, **params: Any) -> None:
        self.params = DetectionParams(**params)

    @staticmethod
    def add_options(parser: argparse.ArgumentParser) -> None:
        from harness.flows.bots.semantics import MAX_LATENESS, MAX_WINDOW
        from harness.values import count, number, timestamp

        g = parser.add_argument_group("bot detection (--flow bots, the default)")
        g.add_argument("--window", type=count(1, MAX_WINDOW), default=5, metavar="S",
                       help="window length in seconds (5)")
        g.add_argument("--lateness", type=count(0, MAX_LATENESS), default=10, metavar="S",
                       help="allowed lateness in seconds (10)")
        g.add_argument("--threshold", type=number(0), default=10.0, metavar="R",
                       help="pages/second above which a window is malicious (10.0)")
        g.add_argument("--min-count", type=count(1, 1_000_000_000), default=2, metavar="N",
                       help="fewest events for a window summary (2)")
        g.add_argument("--align", type=timestamp, default=ALIGN_2023, metavar="T",
                       help="window alignment, ISO-8601 or unix seconds"
                            " (2023-01-01T00:00:00Z)")

    @staticmethod
    def params_of(args: argparse.Namespace) -> dict[str, Any]:
        return {"window": args.window, "lateness": args.lateness, "align": args.align,
                "min_count": args.min_count, "threshold": args.threshold}

    def plan(self, job: FlowJob) -> LanePlan:
        """Lanes balanced over this shape's workers, or, when the state must survive a
        change of shape, the identity plan (the same on any shape)."""
        from harness.flows.bots.routing import plan_lanes

        return plan_lanes(job.read.recording, job.read.total_workers,
                          balanced=job.read.recovery_dir is None)

    def prepare(self, job: FlowJob, progress: bool | None) -> list[SegmentCheck]:
        self.plan(job)  # cached: members forked after this find it
        return []

    def source(self, job: FlowJob, run_dir: Path) -> Source[Any]:
        from harness.source.lanes import LaneSource

        read = job.read
        return LaneSource(read.recording, read.speed, read.batch_size,
                          error_log=run_dir / ERRORS, skip_damaged=read.skip_damaged,
                          slice_=job.slice, slots=self.plan(job).lanes)

    def build(self, job: FlowJob, source: Source[Any], run_dir: Path, *,
              live_lanes: int | None = None) -> Dataflow:
        from harness.flows.bots.flow import build_flow
        from harness.flows.bots.routing import LanePlan
        from harness.flows.bots.sinks import LaneFileSink

        live = live_lanes is not None
        plan = (LanePlan.dealt(tuple(range(live_lanes)), job.read.total_workers)
                if live_lanes is not None else self.plan(job))
        return build_flow(source, LaneFileSink(run_dir, plan, job.console), self.params,
                          recorded=live or job.clock == "recorded",
                          recovery=job.read.recovery_dir is not None,
                          error_log=run_dir / ERRORS, plan=plan,
                          slice_=None if live else job.slice)

    def identity(self, job: FlowJob) -> dict[str, Any]:
        # the snapshot is marshal, whose format only one Python version promises to read
        return {"state": STATE_FORMAT, "python": list(sys.version_info[:2]),
                "params": asdict(self.params)}

    def counts(self, run_dir: Path) -> Tally:
        from harness.flows.bots.sinks import live_tally

        return live_tally(run_dir)

    def collect(self, job: FlowJob, run_dir: Path, items: bool = True) -> FlowOutput:
        from harness.flows.bots.sinks import DEAD_LETTERS, SUMMARIES, read_tally
        from harness.sink.items import Items

        tally = read_tally(run_dir)
        summaries = (Items.merged(sorted(run_dir.glob(SUMMARIES.format("*"))), summary_order)
                     if items else Items.counted(tally.windows))
        dead = [orjson.loads(line) for path in sorted(run_dir.glob(DEAD_LETTERS.format("*")))
                for line in path.read_bytes().splitlines()]
        dead.sort(key=lambda d: d["seq"])
        return FlowOutput(summaries, dead, tally)

    def summary(self, output: FlowOutput) -> tuple[str, dict[str, Any]]:
        t: Tally = output.counts
        extra = "".join(f" {name}={getattr(t, name)}" for name in ("outside", "skipped")
                        if getattr(t, name))
        return (f"events={t.events} windows={t.windows} malicious={t.malicious} late={t.late}"
                f" invalid={t.invalid} canary={t.canary} counted={t.counted}{extra}",
                t.to_json())

    def finish(self, job: FlowJob, output: FlowOutput, recording: Recording,
               whole: bool) -> None:
        missing = recording.unaccounted(output.counts.events, output.counts.damaged)
        if missing is not None and whole:
            count, where = missing
            output.counts.damaged += count
            output.dead_letters.append({"seq": -1, "reason": "damaged", "user": None,
                                        "timestamp": None, "where": where})
        manifest, tally = recording.manifest, output.counts
        if (manifest.complete and whole and not job.read.skip_damaged and not job.slice
                and tally.events != manifest.events):
            raise RecordingError(f"{recording}: the manifest lists {manifest.events}"
                                 f" events, the segments hold {tally.events}")
