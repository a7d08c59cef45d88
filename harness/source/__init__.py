"""Replay sources: a recording read into a Bytewax dataflow, and the clocks it runs on.

- `replay`: `ReplaySource`, payload dicts sharded by a key (any flow's input);
- `keys`: the keying rule, defined once; `keylanes`: lanes derived by a key, cached;
- `lanes`: `LaneSource`, the raw lane reader behind both;
- `clock`: `RecordedClock`, and `virtual_time` for Bytewax's own clocks.
"""
