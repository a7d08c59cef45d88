"""EventStreams client: what the rest of the harness imports, from the modules that hold it.

One concept a module, lowest first:

- `urls`: URLs checked (`check_url`) and shown without credentials (`public_url`);
- `sse`: SSE framing, a byte stream in chunks of any size as `ReceivedEvent`s
  (`SSEFramer`, `EventTooLarge` for an event over the limits);
- `arrivals`: receive times, and when every event has been handed on (`Arrivals`);
- `transport`: one HTTP GET behind one seam (`Transport`, `Response`,
  `TransportError`; `Urllib3Transport` is the real one and the default);
- `connection`: one attempt over a transport, its answer judged (`Connection`,
  `RetryableError`);
- `stream`: the policy, `EventStream`: one connection at a time, resume with
  `Last-Event-ID`, de-duplication, backoff, idle watchdog (`StreamStats`).
"""

from __future__ import annotations

from harness.eventstreams.arrivals import Arrivals
from harness.eventstreams.connection import Connection, RetryableError
from harness.eventstreams.sse import (
    DEFAULT_MAX_EVENT_BYTES,
    MAX_EVENT_LINES,
    EventTooLarge,
    ReceivedEvent,
    SSEFramer,
)
from harness.eventstreams.stream import DEFAULT_RETRY_AFTER_CAP, EventStream, StreamStats
from harness.eventstreams.transport import (
    Response,
    Timeout,
    Transport,
    TransportError,
    Urllib3Transport,
)
from harness.eventstreams.urls import check_url, public_url

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "DEFAULT_RETRY_AFTER_CAP", "MAX_EVENT_LINES", "Arrivals",
           "Connection", "EventStream", "EventTooLarge", "ReceivedEvent", "Response",
           "RetryableError", "SSEFramer", "StreamStats", "Timeout", "Transport",
           "TransportError", "Urllib3Transport", "check_url", "public_url"]
