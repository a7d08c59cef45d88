"""The bot-detection flow as an ordinary plug-in: `--flow harness.flows.bots.plugin:flow`.

Built only from the public pieces a user has: the replay source (keyed by
`user`, so each user's events arrive in recording order), `op.key_on` by
the same key, and a stateful step per user running the same `Detector`
(`semantics`) as the harness's own lane fast path. Its window summaries are
the fast path's; events the source does not pass on (no string `user`,
payloads that are not JSON) are the source's dead letters instead of the
flow's invalid count. Items: every window summary, and one
`{"reason": ..., "user": ..., "timestamp": ...}` per late or invalid event.
"""

from __future__ import annotations

from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink

from harness.flows.bots.semantics import (
    CANARY,
    DeadLetter,
    DetectionParams,
    Detector,
    Tally,
    WindowSummary,
    classify,
)

__all__ = ["flow"]

Item = dict[str, Any]


class _UserDetector(StatefulBatchLogic[Item, Item, Any]):
    """One user's events through a `Detector`; emits summaries and dead letters as dicts."""

    def __init__(self, params: DetectionParams, resume: Any) -> None:
        self._params = params
        self._detector = Detector(params)
        if resume is not None:
            self._detector.users = resume

    def on_batch(self, values: list[Item]) -> tuple[list[Item], bool]:
        emit: list[WindowSummary | DeadLetter] = []
        users, stamps = [], []
        for payload in values:
            verdict = classify(payload, self._params)
            if isinstance(verdict, str):
                if verdict != CANARY:
                    emit.append(DeadLetter(-1, verdict, payload.get("user"),
                                           payload.get("timestamp")))
                continue
            users.append(verdict[0])
            stamps.append(verdict[1])
        self._detector.process(users, stamps, [-1] * len(users), Tally(), emit)
        return _rows(emit), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[Item], bool]:
        emit: list[WindowSummary | DeadLetter] = []
        self._detector.finish(Tally(), emit)
        return _rows(emit), StatefulBatchLogic.RETAIN

    def snapshot(self) -> Any:
        import copy

        return copy.deepcopy(self._detector.users)


def _rows(items: list[WindowSummary | DeadLetter]) -> list[Item]:
    rows = []
    for item in items:
        if isinstance(item, WindowSummary):
            rows.append(item.to_json())
        else:
            rows.append({"reason": item.reason, "user": item.user, "timestamp": item.timestamp})
    return rows


def flow(source: Source[Item], sink: Sink[Any], params: DetectionParams | None = None
         ) -> Dataflow:
    """Bot detection over a replay source keyed by `user` (`--key user`, the default)."""
    detection = params or DetectionParams()
    dataflow = Dataflow("bots_plugin")
    edits = op.input("edits", dataflow, source)
    by_user = op.key_on("by_user", edits, lambda payload: str(payload["user"]))
    detected = op.stateful_batch("detect", by_user,
                                 lambda resume: _UserDetector(detection, resume))
    op.output("out", op.map("rows", detected, lambda pair: pair[1]), sink)
    return dataflow
