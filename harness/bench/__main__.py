"""`python -m harness.bench read|naive|detect ...`: one yardstick row, its figure printed
as one JSON line (what `harness bench` times)."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from harness.bench.yardsticks import naive_bytewax, plain_read


def _main(argv: list[str]) -> None:
    kind, path, *rest = argv
    if kind == "read":
        print(orjson.dumps({"events": plain_read(Path(path))}).decode())
    elif kind == "naive":
        flow, key, out = rest
        print(orjson.dumps({"items": naive_bytewax(Path(path), flow, key, Path(out))}).decode())
    else:
        from harness.flows.bots.reference import plain_loop
        from harness.flows.bots.semantics import DetectionParams

        tally = plain_loop(Path(path), DetectionParams())
        print(orjson.dumps(tally.to_json()).decode())


if __name__ == "__main__":
    _main(sys.argv[1:])
