"""The bot-detection dataflow, defined once for replay and live.

    source --Chunk--> key by lane --> detect (decode, then detect) --Report--> sink

A `Chunk` is a run of recording lines (envelopes) from one lane. Sources
differ (a recording, the live stream); everything after them is this one
graph. Work crosses the keyed exchange as whole batches, never item by item,
because Bytewax pickles every item that crosses a process boundary. This is
the harness's own fast path; `harness.flows.bots.plugin` is the same
detection written as an ordinary plug-in over the public replay source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink

from harness.errors import logging_errors
from harness.flows.bots.decode import Decoder, EventBatch
from harness.flows.bots.routing import LanePlan
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


@dataclass(slots=True)
class Report:
    """What detect produced for one batch: window summaries and dead letters, in
    order, and the counts. One item per batch, so the hop to the sink pickles
    one object rather than one per window."""

    items: list[WindowSummary | DeadLetter] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)


class DetectLogic(StatefulBatchLogic[Chunk, Report, bytes | None]):
    """Decodes one lane's chunks and runs a `Detector` over them; a `Report` per batch.

    Decoding here, after the keyed exchange, means only raw lines ever cross
    it. The detector's state is snapshotted (compactly) only when recovery is
    on: without it nobody reads the snapshot.
    """

    def __init__(self, decode: Callable[[Chunk], EventBatch], detector: Detector,
                 recovery: bool, resume: bytes | None) -> None:
        self.decode = decode
        self.detector = detector
        self.recovery = recovery
        if resume:
            detector.restore(resume)

    def on_batch(self, values: list[Chunk]) -> tuple[list[Report], bool]:
        report = Report()
        tally, emit = report.tally, report.items
        detector = self.detector
        for chunk in values:
            batch = self.decode(chunk)
            tally.events += batch.events
            tally.canary += batch.canary
            tally.outside += batch.outside
            tally.invalid += len(batch.invalid)
            tally.skipped += batch.skipped
            emit.extend(batch.invalid)
            emit.extend(batch.damage)
            detector.process(batch.users, batch.timestamps, batch.seqs, tally, emit,
                             batch.recvs)
            if batch.tick is not None:
                detector.advance(batch.tick, tally, emit)
        return [report], StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[Report], bool]:
        report = Report()
        self.detector.finish(report.tally, report.items)
        return [report], StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes | None:
        return self.detector.snapshot() if self.recovery else None


def build_flow(
    source: Source[Chunk],
    sink: Sink[tuple[str, Report]],
    params: DetectionParams | None = None,
    *,
    recorded: bool = False,
    recovery: bool = False,
    flow_id: str = "wikistream_bots",
    error_log: Path | None = None,
    plan: LanePlan | None = None,
    slice_: Slice | None = None,
) -> Dataflow:
    """The detection dataflow.

    `recorded` False decides by event time only (replay); True uses each
    event's receive time as the clock (live, and `--clock recorded` replays
    of it), with `Chunk.tick`s closing windows while the stream is idle.
    `recovery` snapshots the detectors' state. Damage found while decoding
    is also appended to `error_log`. `plan` (see `routing`) only places the
    lanes' state on the workers that read them; any plan gives the same
    output. `slice_` keeps part of the input (the rest is counted as
    `outside`).
    """
    params = params or DetectionParams()
    decode = logging_errors(Decoder(params, slice_, recorded), error_log)
    flow = Dataflow(flow_id)
    chunks = op.input("events", flow, source)
    keys = (plan or LanePlan.identity(1)).keys  # lane -> a key its reader's worker owns
    keyed = op.key_on("by_lane", chunks,
                      lambda c: keys[c.lane] if c.lane < len(keys) else lane_name(c.lane))
    detected = op.stateful_batch(
        "detect", keyed,
        lambda resume: DetectLogic(decode, Detector(params, recorded), recovery, resume))
    op.output("sink", detected, sink)
    return flow
