"""Progress on long work: one self-overwriting line on a terminal, quiet otherwise."""

from __future__ import annotations

import sys
import time


class Progress:
    """A one-line progress report on stderr, at most every `interval` seconds."""

    def __init__(self, label: str, total: int | None = None, interval: float = 1.0,
                 enabled: bool | None = None) -> None:
        self.label, self.total, self.interval = label, total, interval
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.started = self._last = time.monotonic()

    def update(self, done: int, extra: str = "") -> None:
        now = time.monotonic()
        if not self.enabled or now - self._last < self.interval:
            return
        self._last = now
        rate = done / max(now - self.started, 1e-9)
        of = f"/{self.total:,}" if self.total else ""
        print(f"\r{self.label}: {done:,}{of} events, {rate:,.0f}/s {extra}", end="",
              file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.enabled and time.monotonic() - self.started >= self.interval:
            print(file=sys.stderr)
