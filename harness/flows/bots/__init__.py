"""The bot-detection flow: edits keyed by user, 5-second event-time windows,
accounts editing faster than 10 pages/second flagged.

- `semantics`: the rules, defined once (`DetectionParams`, `Detector`, ...);
- `reference`: the same rules as one plain loop, the oracle and baseline;
- `detection`: the flow as the harness runs it (`--flow bots`, the default), built
  from `decode`, `flow`, `routing` and `sinks`: the lane fast path;
- `plugin`: the same detection written as an ordinary `--flow MODULE:FUNCTION`.
"""
