"""Where a recording's envelopes stand in EventStreams' id space: the SSE id each is
sent with, its event time, and whether a client's resume position has reached it."""

from __future__ import annotations

import contextlib

from harness.eventstreams.ids import TOPIC, Position, id_entries, is_count, is_number
from harness.recording.envelope import Envelope
from harness.times import parse_iso

__all__ = ["event_ms", "resume_hit", "wire_id"]


def wire_id(envelope: Envelope) -> str:
    """The SSE id sent for an envelope: the recorded raw id, or one made from `seq`."""
    if envelope.id is not None:
        return envelope.id
    return f'[{{"topic":"{TOPIC}","partition":0,"offset":{envelope.seq}}}]'


def _data_ms(envelope: Envelope) -> float | None:
    """Event time in ms from the payload: `meta.dt`, else `timestamp` (seconds)."""
    data = envelope.data
    if not isinstance(data, dict):
        return None
    meta = data.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("dt"), str):
        with contextlib.suppress(ValueError):
            return parse_iso(meta["dt"]).timestamp() * 1000.0
    ts = data.get("timestamp")
    return ts * 1000.0 if is_number(ts) else None


def event_ms(envelope: Envelope) -> float | None:
    """Event time in ms: the id's timestamp, else `meta.dt`, else `timestamp` seconds."""
    for entry in id_entries(wire_id(envelope)):
        ts = entry.get("timestamp")
        if is_number(ts) and ts >= 0:
            return float(ts)
    return _data_ms(envelope)


def resume_hit(positions: list[Position], envelope: Envelope) -> int | None:
    """0 to start at this envelope, 1 to start after it, None if no position reached."""
    entries = id_entries(wire_id(envelope))
    best: int | None = None
    for pos in positions:
        matching = [e for e in entries if pos.matches(e)]
        if pos.offset is not None:
            for e in matching:
                off = e.get("offset")
                if is_count(off) and off >= 0 and off >= pos.offset:
                    hit = 1 if off == pos.offset else 0
                    best = hit if best is None else min(best, hit)
        else:
            assert pos.timestamp is not None
            stamps = [e["timestamp"] for e in matching
                      if is_number(e.get("timestamp")) and e["timestamp"] >= 0]
            ms = min(stamps) if stamps else _data_ms(envelope)
            if ms is not None and ms >= pos.timestamp:
                best = 0
    return best
