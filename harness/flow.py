"""The bot-detection dataflow, defined once for replay and live.

    source --Chunk--> decode --EventBatch--> key by lane --> detect --> sink

A `Chunk` is a run of recording lines (envelopes) from one lane. Sources
differ (a recording, the live stream); everything after them is this one
graph. Work crosses the keyed exchange as whole batches, never item by item,
because Bytewax pickles every item that crosses a process boundary.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import msgspec
import orjson
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink
from msgspec import UNSET, UnsetType

from harness.recording import RecordingError, lane_name, logging_errors
from harness.routing import lane_keys
from harness.semantics import (
    CANARY,
    DAMAGED,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    NOT_JSON,
    DeadLetter,
    DetectionParams,
    Detector,
    Tally,
    WindowSummary,
    classify,
)


@dataclass(slots=True)
class Report:
    """What detect produced for one batch: window summaries and dead letters, in
    order, and the counts. One item per batch, so the hop to the sink pickles
    one object rather than one per window."""

    items: list[WindowSummary | DeadLetter] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)


@dataclass(frozen=True, slots=True)
class Chunk:
    """Newline-separated envelope lines of one lane, in stream order.

    `origin` says which recorded frames the lines came from, for errors. A
    line that is not an envelope is damage: an error naming the place, or
    with `strict` off, skipped and reported. `damage` carries damage the
    source skipped.
    """

    lane: int
    lines: bytes
    origin: tuple[tuple[str, int, int], ...] = ()  # (place, first line there, lines)
    strict: bool = True
    damage: DeadLetter | None = None
    damaged_lines: int = 0

    def place(self, line: int) -> str:
        """Where the chunk's `line` (1-based) is in the recording."""
        for where, first, count in self.origin:
            if line <= count:
                return f"{where} line {first + line - 1}"
            line -= count
        return f"lane {self.lane} line {line}"


@dataclass(slots=True)
class EventBatch:
    """A decoded chunk: countable events as parallel lists, plus what was not."""

    lane: int
    users: list[str] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    events: int = 0
    canary: int = 0
    invalid: list[DeadLetter] = field(default_factory=list)
    damage: list[DeadLetter] = field(default_factory=list)
    skipped: int = 0


class _Meta(msgspec.Struct):
    domain: Any = None


class _Event(msgspec.Struct):
    user: Any = None
    timestamp: Any = None
    meta: _Meta | None = None


class _Envelope(msgspec.Struct):
    seq: int
    data: _Event | UnsetType = UNSET  # unset: a kept non-JSON payload


# RecursionError: msgspec gives up on deep nesting sooner than orjson does.
_NOT_FAST = (msgspec.ValidationError, msgspec.DecodeError, RecursionError)
_decode_all = msgspec.json.Decoder(list[_Envelope]).decode
_decode_one = msgspec.json.Decoder(_Envelope).decode

# Test hook for the performance gate: extra work per event, off unless set.
_SLOWDOWN = int(os.environ.get("HARNESS_SLOWDOWN_LOOPS", "0"))


def decode(chunk: Chunk) -> EventBatch:
    """Decode only what detection needs; anything unusual takes the slow path.

    The fast path (msgspec, only `user`/`timestamp`/`meta.domain`, no other
    field materialised) accepts exactly the events `classify` accepts; every
    other line is judged by `classify` itself, so the rules stay in one place.
    A whole chunk is decoded in one call; only a chunk with a line that is not
    an envelope of an object (damage, non-object payloads) goes line by line.
    """
    lines = chunk.lines.rstrip(b"\n")
    batch = EventBatch(chunk.lane)
    if chunk.damage is not None:
        batch.damage.append(chunk.damage)
        batch.skipped += chunk.damaged_lines
    if not lines:
        return batch
    try:
        envelopes = _decode_all(b"[" + lines.replace(b"\n", b",") + b"]")
    except _NOT_FAST:
        for number, line in enumerate(lines.split(b"\n"), start=1):
            if not _decode_line(line, batch):
                where = chunk.place(number)
                if chunk.strict:
                    raise RecordingError(f"{where}: not a recording envelope") from None
                batch.damage.append(DeadLetter(-1, DAMAGED, where=where))
                batch.skipped += 1
    else:
        batch.events = len(envelopes)
        _add_envelopes(envelopes, batch)
    if _SLOWDOWN:
        for _ in range(_SLOWDOWN * batch.events):
            pass
    return batch


def _add_envelopes(envelopes: list[_Envelope], batch: EventBatch) -> None:
    users, stamps, seqs = batch.users, batch.timestamps, batch.seqs
    for env in envelopes:  # the hot loop
        data = env.data
        if data is not UNSET:
            user, ts, meta = data.user, data.timestamp, data.meta
            if (type(user) is str and type(ts) is int and MIN_TIMESTAMP <= ts <= MAX_TIMESTAMP
                    and (meta is None or meta.domain != CANARY)):
                users.append(user)
                stamps.append(ts)
                seqs.append(env.seq)
                continue
        _add_unusual(env, batch)


def _add_unusual(env: _Envelope, batch: EventBatch) -> None:
    """Anything the hot loop did not accept: let `classify` decide."""
    data = env.data
    if data is UNSET:
        batch.invalid.append(DeadLetter(env.seq, NOT_JSON))
        return
    fields: dict[str, Any] = {"user": data.user, "timestamp": data.timestamp}
    if data.meta is not None:
        fields["meta"] = {"domain": data.meta.domain}
    _add_slow(env.seq, fields, batch)


def _decode_line(line: bytes, batch: EventBatch) -> bool:
    """Add one line; False if it is not an envelope at all (damage, not an event)."""
    try:
        _add_envelopes([_decode_one(line)], batch)
        batch.events += 1
        return True
    except _NOT_FAST:
        pass
    try:
        envelope = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(envelope, dict) or type(envelope.get("seq")) is not int:
        return False
    batch.events += 1
    if "data" not in envelope:
        batch.invalid.append(DeadLetter(envelope["seq"], NOT_JSON))
        return True
    _add_slow(envelope["seq"], envelope["data"], batch)
    return True


def _add_slow(seq: int, payload: Any, batch: EventBatch) -> None:
    verdict = classify(payload)
    if verdict == CANARY:
        batch.canary += 1
    elif isinstance(verdict, str):
        batch.invalid.append(DeadLetter(seq, verdict))
    else:
        user, timestamp = verdict
        batch.users.append(user)
        batch.timestamps.append(timestamp)
        batch.seqs.append(seq)


class DetectLogic(StatefulBatchLogic[EventBatch, Report, dict]):
    """Runs a `Detector` over one lane's batches; emits a `Report` per batch."""

    def __init__(self, params: DetectionParams, clock: Callable[[], float] | None,
                 resume: dict | None) -> None:
        self.detector = Detector(params, clock)
        if resume is not None:
            self.detector.users = resume

    def on_batch(self, values: list[EventBatch]) -> tuple[list[Report], bool]:
        report = Report()
        tally, emit = report.tally, report.items
        for batch in values:
            tally.events += batch.events
            tally.canary += batch.canary
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
        return datetime.now(tz=UTC) + timedelta(seconds=1)

    def snapshot(self) -> dict:
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
) -> Dataflow:
    """The detection dataflow. `clock=None` is event time only (replay);
    pass `time.time` for live wall-clock watermarks. Damage found while
    decoding is also appended to `error_log` (see `RecordingSource`).
    `lanes` and `workers` (the cluster's total) only spread the lanes'
    detect state evenly over the workers; any values give the same output."""
    params = params or DetectionParams()
    flow = Dataflow(flow_id)
    chunks = op.input("events", flow, source)
    batches = op.map("decode", chunks, logging_errors(decode, error_log))
    keys = lane_keys(lanes, workers)  # lane -> a key owned by worker lane % workers
    keyed = op.key_on("by_lane", batches,
                      lambda b: keys[b.lane] if b.lane < len(keys) else lane_name(b.lane))
    detected = op.stateful_batch(
        "detect", keyed, lambda resume: DetectLogic(params, clock, resume))
    op.output("sink", detected, sink)
    return flow
