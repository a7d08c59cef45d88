"""The reference model: the detection rules as one plain Python loop, no Bytewax.

It reads every event in recording (arrival) order, keeps each user's
maximum timestamp, and only at the end turns the windows into summaries.
That is a different algorithm from the flow's streaming `Detector` (no
watermarks, no closing), so agreement between the two is evidence, and it
is the honest single-threaded baseline for benchmarks: decompress, parse
everything, detect.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import zstandard

from harness.flows.bots.semantics import (
    CANARY,
    LATE,
    DeadLetter,
    DetectionParams,
    Tally,
    WindowSummary,
    classify,
    summarize,
)
from harness.recording.envelope import NOT_JSON, Envelope
from harness.recording.reader import Recording
from harness.recording.slice import Slice


@dataclass
class ReferenceResult:
    summaries: list[WindowSummary] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)
    wall_seconds: float = 0.0


def detect(envelopes: Iterable[Envelope], params: DetectionParams,
           slice_: Slice | None = None) -> ReferenceResult:
    """Apply the detection rules to recording envelopes in order (only those in `slice_`)."""
    return detect_payloads(((e.seq, e.data if e.is_json else _NOT_JSON) for e in envelopes),
                           params, slice_)


_NOT_JSON = object()  # the payload of a line that was not JSON


def detect_payloads(events: Iterable[tuple[int, Any]], params: DetectionParams,
                    slice_: Slice | None = None) -> ReferenceResult:
    """`detect` over `(seq, payload)` pairs in stream order; a payload that was not
    JSON is `_NOT_JSON`. Per-user order is all that matters, so a lane-by-lane
    order gives the same result as arrival order."""
    result = ReferenceResult()
    tally = result.tally
    maxima: dict[str, int] = {}
    windows: dict[tuple[str, int], list[int]] = {}
    for seq, data in events:
        tally.events += 1
        if slice_ and isinstance(data, dict) and not slice_.admits(
                data.get("timestamp"), data.get("wiki")):
            tally.outside += 1
            continue
        verdict = NOT_JSON if data is _NOT_JSON else classify(data, params)
        if verdict == CANARY:
            tally.canary += 1
            continue
        if isinstance(verdict, str):
            tally.invalid += 1
            result.dead_letters.append(DeadLetter(seq, verdict))
            continue
        user, ts = verdict
        highest = maxima.get(user)
        if highest is not None and ts < highest - params.lateness:
            tally.late += 1
            result.dead_letters.append(DeadLetter(seq, LATE, user, ts))
            continue
        if highest is None or ts > highest:
            maxima[user] = ts
        tally.counted += 1
        window = windows.setdefault((user, params.window_id(ts)), [0, ts, ts])
        window[0] += 1
        window[1] = min(window[1], ts)
        window[2] = max(window[2], ts)
    for (user, wid), (count, first, last) in windows.items():
        summary = summarize(params, user, wid, count, first, last)
        if summary is not None:
            result.summaries.append(summary)
            tally.windows += 1
            tally.malicious += summary.malicious
    return result


def plain_loop(path: str | os.PathLike[str], params: DetectionParams) -> Tally:
    """The benchmark baseline: a plain single-threaded loop a user would write.

    Streams each segment through zstd and parses every line with orjson (no
    Bytewax, no lanes, no msgspec), and detects with the same rules.
    """
    recording = Recording(path)

    def payloads() -> Iterator[tuple[int, Any]]:
        for index in range(len(recording.manifest.segments)):
            with recording.open_segment(index) as f:
                reader = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
                for line in io.BufferedReader(reader, 1 << 20):
                    env = orjson.loads(line)
                    yield env["seq"], env.get("data", _NOT_JSON)

    return detect_payloads(payloads(), params).tally


def replay_reference(path: str | os.PathLike[str], params: DetectionParams,
                     slice_: Slice | None = None) -> ReferenceResult:
    """The reference model over a recording directory, timed."""
    start = time.perf_counter()
    result = detect(Recording(path).envelopes(), params, slice_)
    result.wall_seconds = time.perf_counter() - start
    return result
