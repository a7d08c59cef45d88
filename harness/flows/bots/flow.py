"""The bot-detection dataflow, defined once for replay and live.

    source --Chunk--> decode --EventBatch--> key by lane --> detect --Report--> sink

A `Chunk` is a run of recording lines (envelopes) from one lane. Sources
differ (a recording, the live stream); everything after them is this one
graph. Work crosses the keyed exchange as whole batches, never item by item,
because Bytewax pickles every item that crosses a process boundary. This is
the harness's own fast path; `harness.flows.bots.plugin` is the same
detection written as an ordinary plug-in over the public replay source.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink

from harness.errors import logging_errors
from harness.flows.bots.decode import Decoder, EventBatch
from harness.flows.bots.routing import lane_keys
from harness.flows.bots.semantics import (
    DeadLetter,
    DetectionParams,
    Detector,
    Tally,
    WindowSummary,
)
from harness.recording.lanes import Chunk, lane_name
from harness.recording.slice import Slice

__all__ = ["DetectLogic", "Report", "build_flow"]

UserStates = dict[str, Any]


@dataclass(slots=True)
class Report:
    """What detect produced for one batch: window summaries and dead letters, in
    order, and the counts. One item per batch, so the hop to the sink pickles
    one object rather than one per window."""

    items: list[WindowSummary | DeadLetter] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)


class DetectLogic(StatefulBatchLogic[EventBatch, Report, UserStates]):
    """Runs a `Detector` over one lane's batches; emits a `Report` per batch."""

    def __init__(self, params: DetectionParams, clock: Callable[[], float] | None,
                 resume: UserStates | None) -> None:
        self.detector = Detector(params, clock)
        if resume is not None:
            self.detector.users = resume

    def on_batch(self, values: list[EventBatch]) -> tuple[list[Report], bool]:
        report = Report()
        tally, emit = report.tally, report.items
        for batch in values:
            tally.events += batch.events
            tally.canary += batch.canary
            tally.outside += batch.outside
            tally.invalid += len(batch.invalid)
            tally.skipped += batch.skipped
            emit.extend(batch.invalid)
            emit.extend(batch.damage)
            self.detector.process(batch.users, batch.timestamps, batch.seqs, tally, emit)
        self.detector.advance(tally, emit)
        return [report], StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[Report], bool]:
        report = Report()
        self.detector.advance(report.tally, report.items)
        return ([report] if report.items else []), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[Report], bool]:
        report = Report()
        self.detector.finish(report.tally, report.items)
        return [report], StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        if self.detector.clock is None or not self.detector.has_open_windows():
            return None
        return datetime.now(tz=timezone.utc) + timedelta(seconds=1)

    def snapshot(self) -> UserStates:
        return copy.deepcopy(self.detector.users)


def build_flow(
    source: Source[Chunk],
    sink: Sink[tuple[str, Report]],
    params: DetectionParams | None = None,
    *,
    clock: Callable[[], float] | None = None,
    flow_id: str = "wikistream_bots",
    error_log: Path | None = None,
    lanes: int = 1,
    workers: int = 1,
    slice_: Slice | None = None,
) -> Dataflow:
    """The detection dataflow. `clock=None` is event time only (replay);
    pass `time.time` for live wall-clock watermarks. Damage found while
    decoding is also appended to `error_log`. `lanes` and `workers` (the
    cluster's total) only spread the lanes' detect state evenly over the
    workers; any values give the same output. `slice_` keeps part of the
    input (the rest is counted as `outside`)."""
    params = params or DetectionParams()
    flow = Dataflow(flow_id)
    chunks = op.input("events", flow, source)
    batches = op.map("decode", chunks, logging_errors(Decoder(params, slice_), error_log))
    keys = lane_keys(lanes, workers)  # lane -> a key owned by worker lane % workers
    keyed = op.key_on("by_lane", batches,
                      lambda b: keys[b.lane] if b.lane < len(keys) else lane_name(b.lane))
    detected = op.stateful_batch(
        "detect", keyed, lambda resume: DetectLogic(params, clock, resume))
    op.output("sink", detected, sink)
    return flow
