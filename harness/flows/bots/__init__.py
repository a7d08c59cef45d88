"""The bot-detection flow: edits keyed by user, 5-second event-time windows,
accounts editing faster than 10 pages/second flagged.

- `semantics`: the rules, defined once (`DetectionParams`, `Detector`, ...);
- `reference`: the same rules as one plain loop, the oracle and baseline;
- `decode`, `flow`, `routing`, `sinks`, `replay`: the harness's lane fast path;
- `plugin`: the same detection as an ordinary `--flow` plug-in.
"""
