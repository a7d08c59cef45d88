"""The EventStreams wire format, as the local server writes it.

A stream opens with a `:ok` comment; each event is `event: message`, an
`id:` line (the SSE id, a JSON array of positions), `data:` lines (the JSON
payload), and a blank line. Errors arrive as `event: error` frames, and a
`:` comment keeps an idle connection alive.
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime, timezone
from typing import Final

import orjson

from harness.eventstreams.ids import CANARY_DOMAIN, SCHEMA, STREAM, TOPIC
from harness.recording.envelope import Envelope
from harness.serve.positions import event_ms, wire_id

__all__ = ["KEEPALIVE", "MALFORMED", "OPENING", "canary_frame", "error_frame", "event_frame"]

OPENING: Final = b":ok\n\n"
KEEPALIVE: Final = b":\n\n"
MALFORMED: Final = (b'event: message\ndata: {"$schema":"' + SCHEMA.encode() + b'",'
                    b'"meta":{"domain":"malformed\n\n')
_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")


def _id_line(sse_id: str) -> bytes:
    return b"id: " + sse_id.replace("\r", "").replace("\n", "").encode("utf-8", "surrogatepass")


def _data_lines(text: str) -> bytes:
    return b"".join(b"data: " + line.encode("utf-8", "surrogatepass") + b"\n"
                    for line in _LINE_BREAK.split(text))


def event_frame(envelope: Envelope) -> bytes:
    """The wire bytes of one recording event, as stream.wikimedia.org sends them."""
    if envelope.is_json:
        data = b"data: " + orjson.dumps(envelope.data) + b"\n"
    else:
        data = _data_lines(envelope.raw or "")
    return b"event: message\n" + _id_line(wire_id(envelope)) + b"\n" + data + b"\n"


def canary_frame(envelope: Envelope, position: int) -> bytes:
    ms = event_ms(envelope)
    seconds = int(ms // 1000) if ms is not None else int(time.time())
    dt = datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")
    ident = str(uuid.uuid5(uuid.NAMESPACE_URL, f"harness-canary/{position}"))
    event = {
        "$schema": SCHEMA,
        "meta": {"uri": f"https://{CANARY_DOMAIN}/wiki/Canary", "request_id": ident, "id": ident,
                 "dt": dt, "domain": CANARY_DOMAIN, "stream": STREAM, "topic": TOPIC,
                 "partition": 0, "offset": -1},
        "id": 0, "type": "edit", "namespace": 0, "title": "Canary", "comment": "canary event",
        "timestamp": seconds, "bot": False, "server_url": f"https://{CANARY_DOMAIN}",
        "server_name": CANARY_DOMAIN, "server_script_path": "/w", "parsedcomment": "canary event",
    }
    return b"event: message\ndata: " + orjson.dumps(event) + b"\n\n"


def error_frame(position: int) -> bytes:
    body = {"type": "error", "message": "injected error before event", "position": position}
    return b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"

