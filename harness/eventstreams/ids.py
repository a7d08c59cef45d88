"""EventStreams vocabulary: event identity, SSE ids, resume positions, times.

An EventStreams SSE id is a JSON array of `{topic, partition, offset}` or
`{topic, partition, timestamp}` objects (timestamp in ms). A client resumes
by sending the last id it stored as `Last-Event-ID`; resuming by timestamp
can skip events that share a millisecond, so a client rewinds a few
seconds and de-duplicates on `meta.id` (`event_key`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final, TypeGuard

import orjson

from harness.times import parse_iso
from harness.version import __version__

__all__ = ["CANARY_DOMAIN", "DEFAULT_URL", "HISTORY_SECONDS", "OFFSET_ID_PREFIX", "SCHEMA",
           "STREAM", "TIMESTAMP_ID_PREFIX", "TOPIC", "USER_AGENT", "Position", "event_key",
           "id_entries", "is_count", "is_number", "parse_resume", "parse_since", "resume_id"]

TOPIC: Final = "eqiad.mediawiki.recentchange"
STREAM: Final = "mediawiki.recentchange"  # meta.stream of every event
SCHEMA: Final = "/mediawiki/recentchange/1.0.0"  # $schema of every event
CANARY_DOMAIN: Final = "canary"  # meta.domain of the canary events EventStreams sends hourly
# The SSE id of an event in partition 0 of TOPIC: one of these, the number, then "}]".
OFFSET_ID_PREFIX: Final = '[{"topic":"' + TOPIC + '","partition":0,"offset":'
TIMESTAMP_ID_PREFIX: Final = '[{"topic":"' + TOPIC + '","partition":0,"timestamp":'
DEFAULT_URL: Final = "https://stream.wikimedia.org/v2/stream/recentchange"
HISTORY_SECONDS: Final = 7 * 86400  # how far back `since` reaches: EventStreams keeps a week
USER_AGENT: Final = (f"wikistream-harness/{__version__}"
              " (https://github.com/wikistream-harness/wikistream-harness; replay/benchmark"
              " harness for Bytewax flows)")


def event_key(value: Any, sse_id: str | None) -> str | None:
    """An event's identity for de-duplication: `meta.id`, else its SSE id."""
    meta = value.get("meta") if isinstance(value, dict) else None
    uid = meta.get("id") if isinstance(meta, dict) else None
    if isinstance(uid, str):
        return uid
    return f"sse:{sse_id}" if sse_id else None


@dataclass(frozen=True, slots=True)
class Position:
    """One entry of a resume id: an offset or a timestamp (ms) in a topic-partition."""

    topic: str | None
    partition: int | None
    offset: int | None
    timestamp: float | None

    def matches(self, entry: dict[str, Any]) -> bool:
        return ((self.topic is None or entry.get("topic") in (None, self.topic))
                and (self.partition is None or entry.get("partition") in (None, self.partition)))


def is_count(value: object) -> TypeGuard[int]:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[int | float]:
    """A finite int or float that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def id_entries(raw: str) -> list[dict[str, Any]]:
    """The JSON objects of an EventStreams id; empty for anything else."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return []
    return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []


def parse_resume(raw: str) -> list[Position] | None:
    """Positions of a `Last-Event-ID`, or None if it is not an EventStreams id.

    Entries with a negative offset and no timestamp mean "no position" and
    are dropped, so the result may be empty.
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, list):
        return None
    positions = []
    for entry in value:
        if not isinstance(entry, dict):
            return None
        topic, partition = entry.get("topic"), entry.get("partition")
        offset, timestamp = entry.get("offset"), entry.get("timestamp")
        if (topic is not None and not isinstance(topic, str)) or (
                partition is not None and not is_count(partition)):
            return None
        if (offset is None and timestamp is None) or (
                offset is not None and not is_count(offset)) or (
                timestamp is not None and not is_number(timestamp)):
            return None
        if offset is not None and offset >= 0:
            positions.append(Position(topic, partition, offset, None))
        elif timestamp is not None and timestamp >= 0:
            positions.append(Position(topic, partition, None, timestamp))
    return positions


def parse_since(text: str) -> float:
    """`since` as epoch milliseconds: a number of ms or an ISO-8601 time (UTC if naive)."""
    text = text.strip()
    try:
        ms = float(text)
    except ValueError:
        try:
            when = parse_iso(text)
        except ValueError:
            raise ValueError(f"since={text!r} is neither epoch milliseconds nor ISO-8601") from None
        return when.timestamp() * 1000.0
    if not math.isfinite(ms):
        raise ValueError(f"since={text!r} is not a finite number")
    return ms


def resume_id(raw: str, rewind_ms: int) -> str:
    """The `Last-Event-ID` to resume after `raw`: timestamp positions moved back
    `rewind_ms` (resuming by time can skip events sharing a millisecond), and
    `offset: -1` ("no position") entries replaced by that rewound time."""
    try:
        entries = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        return raw
    stamps = [e["timestamp"] for e in entries if isinstance(e.get("timestamp"), int)]
    known = max(stamps) - rewind_ms if stamps else None
    out = []
    for entry in entries:
        if isinstance(entry.get("timestamp"), int):
            entry = {**entry, "timestamp": entry["timestamp"] - rewind_ms}
        elif entry.get("offset") == -1 and known is not None:
            entry = {k: v for k, v in entry.items() if k != "offset"} | {"timestamp": known}
        out.append(entry)
    return orjson.dumps(out).decode()
