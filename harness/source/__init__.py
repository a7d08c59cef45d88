"""Replay sources: a recording read into a Bytewax dataflow, and the clocks it runs on.

- `replay`: `ReplaySource`, payload dicts sharded by a key (any flow's input);
- `payloads`: the shared reader behind it (`PayloadReader`, `Received`);
- `deadletters`: what a source did not pass on, counted and reported (`SourceTally`);
- `turns`: partitions on one worker taking turns, a batch each;
- `keys`: the keying rule, defined once; `keylanes`: lanes by a key, from the cache
  or derived (`derive`);
- `lanes`: `LaneSource`, the raw lane reader;
- `clock`: `RecordedClock`, `virtual_time` for Bytewax's own clocks, `IdleTime`.
"""
