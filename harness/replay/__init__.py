"""Replaying recordings into Bytewax dataflows, deterministically, on any cluster shape.

- `job`: what a replay runs (`Job`, `ReadOptions`);
- `lanes`: the lane-by-lane source of raw envelope lines (the fast path);
- `run`, `cluster`, `recovery`, `outputs`: running a job in this process or
  as a local cluster, its run directory or recovery state, its output files.
"""
