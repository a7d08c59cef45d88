"""`ServerStats`: what a playback server did, counted thread-safely."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields

__all__ = ["ServerStats"]


@dataclass
class ServerStats:
    """Thread-safe counters of what the server did; read them any time."""

    requests: int = 0  # HTTP requests received
    connections: int = 0  # streams opened (200 answers)
    active: int = 0  # streams open right now
    events_sent: int = 0  # recording events written, duplicate copies included
    exhausted: int = 0  # streams that reached the end of the recording
    disconnects: int = 0  # clients that left mid-stream
    not_found: int = 0
    bad_requests: int = 0
    forbidden: int = 0  # require_user_agent
    failed: int = 0  # fail_first answers
    closed_every: int = 0
    closed_after: int = 0
    stalls: int = 0
    duplicates: int = 0
    malformed: int = 0
    canaries: int = 0
    errors: int = 0
    header_timeouts: int = 0  # connections dropped for not sending a request head in time
    busy: int = 0  # connections turned away with 503: max_connections were open
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "_lock"}
