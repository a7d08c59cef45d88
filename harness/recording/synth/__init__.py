"""Deterministic synthetic Wikimedia EventStreams `recentchange` events (see `timeline`).

- `vocabulary`: the words; `entities`: wikis, pages, users; `wikitext`: titles, names,
  summaries; `world`: the wikis and users drawn from the seed;
- `events`: one event as EventStreams sends it; `timeline`: when events come, and which
  (`synthetic_events`).
"""

from harness.recording.synth.timeline import INVALID_KINDS, SynthEvent, synthetic_events

__all__ = ["INVALID_KINDS", "SynthEvent", "synthetic_events"]
