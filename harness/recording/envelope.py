"""The envelope: one recording line, one received event. The schema, defined once.

    {"seq": 17, "id": "<raw SSE id>", "recv": 1700000000.25, "data": {...event as sent...}}
    {"seq": 18, "id": "...", "recv": ..., "raw": "<payload text>", "error": "not-json"}

`seq` numbers events in arrival order across the whole recording; `id` is the
SSE id exactly as the server sent it (or null); `recv` is when the client
received the event (unix seconds). A payload that was JSON is kept value for
value under `data`; anything else is kept as text under `raw`, flagged by
`error`, never dropped. The writer encodes with `encode_envelope`; every
reader decodes with `Envelope.decode`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import orjson

__all__ = ["DAMAGED", "NOT_JSON", "NOT_OBJECT", "TOO_DEEP", "UNPARSED", "Envelope", "EnvelopeError",
           "encode_envelope"]

NOT_JSON: Final = "not-json"  # the payload was not JSON
TOO_DEEP: Final = "too-deep"  # JSON nested too deeply to embed; kept as text
# Dead-letter reasons every flow shares, beside not-json: a payload that is JSON but not
# an object, and recording lines a damaged recording lost.
NOT_OBJECT: Final = "not-object"
DAMAGED: Final = "damaged"
UNPARSED: Final = object()
_DEEP = 500


class EnvelopeError(ValueError):
    """A line that is not an envelope; the message says what is wrong with it."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """One recorded event: arrival number, SSE id, receive time and the payload.

    `data` is the payload as sent when it was JSON (`error` is None); otherwise
    `raw` holds its text and `error` says why it was not embedded.
    """

    seq: int
    id: str | None
    recv: float
    data: Any = None
    raw: str | None = None
    error: str | None = None

    @property
    def is_json(self) -> bool:
        return self.error is None

    @classmethod
    def decode(cls, line: bytes | str) -> Envelope:
        """Parse and check one recording line; raises `EnvelopeError` saying why not."""
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise EnvelopeError(f"not JSON ({exc})") from None
        # the common case, checked with the cheapest tests (every replayed event comes here)
        if type(obj) is dict and "data" in obj:
            seq, recv, sse_id = obj.get("seq"), obj.get("recv"), obj.get("id")
            if (type(seq) is int and type(recv) is float and recv - recv == 0.0
                    and (sse_id is None or type(sse_id) is str)):
                return cls(seq, sse_id, recv, obj["data"])
        return cls._checked(obj)

    @classmethod
    def _checked(cls, obj: Any) -> Envelope:
        if not isinstance(obj, dict):
            raise EnvelopeError("not an envelope (not a JSON object)")
        seq = obj.get("seq")
        if type(seq) is not int:
            raise EnvelopeError("not an envelope (no integer seq)")
        recv = obj.get("recv")
        if not isinstance(recv, int | float) or isinstance(recv, bool) or not math.isfinite(recv):
            raise EnvelopeError(f"seq {seq}: recv is not a number")
        sse_id = obj.get("id")
        if sse_id is not None and not isinstance(sse_id, str):
            raise EnvelopeError(f"seq {seq}: id is not a string")
        if "data" in obj:
            return cls(seq, sse_id, float(recv), obj["data"])
        raw, error = obj.get("raw"), obj.get("error")
        if not isinstance(raw, str) or not isinstance(error, str):
            raise EnvelopeError(f"seq {seq}: neither data nor raw")
        return cls(seq, sse_id, float(recv), None, raw, error)

    def encode(self) -> bytes:
        if self.error is None:
            return orjson.dumps({"seq": self.seq, "id": self.id, "recv": self.recv,
                                 "data": self.data})
        return orjson.dumps({"seq": self.seq, "id": self.id, "recv": self.recv,
                             "raw": self.raw, "error": self.error})


def encode_envelope(
    seq: int, sse_id: str | None, received: float, payload: bytes | str,
    parsed: Any = UNPARSED,
) -> tuple[bytes, Any]:
    """One recording line for a received payload, and the parsed payload.

    Valid JSON is embedded as sent (value-faithful, and no re-encoding cost);
    anything else is kept as text and flagged, never dropped. The parsed
    payload is `None` for non-JSON. A caller that has parsed the payload
    already passes it as `parsed`.
    """
    try:
        value = orjson.loads(payload) if parsed is UNPARSED else parsed
    except orjson.JSONDecodeError:
        text = (payload.decode("utf-8", "backslashreplace") if isinstance(payload, bytes)
                else payload)
        return Envelope(seq, sse_id, received, raw=text, error=NOT_JSON).encode(), None
    raw = payload.encode() if isinstance(payload, str) else payload
    data = value if b"\n" in raw or b"\r" in raw else orjson.Fragment(raw)
    line = Envelope(seq, sse_id, received, data).encode()
    if raw.count(b"[") + raw.count(b"{") > _DEEP and not _loads_ok(line):
        # Nested so deeply that wrapping it in the envelope passes orjson's depth
        # limit: keep it as text, or the line could never be read back.
        text = raw.decode("utf-8", "backslashreplace")
        return Envelope(seq, sse_id, received, raw=text, error=TOO_DEEP).encode(), None
    return line, value


def _loads_ok(line: bytes) -> bool:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return True
