"""`harness bench`: throughput per cluster shape, measured side by side, whole processes.

Every figure is the wall time of a whole process (start-up, imports and
cluster connect included), run in rounds that interleave every row, so
ratios compare runs made at the same time on a noisy machine; the median of
the rounds is reported with min and max. The rows:

- *plain loop*: one Python thread that streams the recording's segments
  through zstd and parses every line with orjson (and, for bot detection,
  detects with the same rules, `reference.plain_loop`);
- *naive Bytewax* (a flow of payloads): what a Bytewax user does without the
  harness: the same flow fed by `bytewax.connectors.files.FileSource` over
  the payloads as JSON lines, `orjson.loads` in a map (events the harness
  would not pass on dropped there), one worker;
- per shape, `harness replay` of the flow, and (a flow of payloads) of
  `--flow passthrough` with the same key: the source into a sink that keeps
  nothing, so the difference is the flow's own share;
- *ceiling* (two processes): two one-worker replays run at once show how
  much the cores slow each other (`m`); with the one-worker start-up `s`
  (the tiny recording) and wall `T1`, two processes can at best reach
  `T1 / (s + (T1 - s) / 2 * m)`. A two-process row says what share of that
  it reached.

"Net of start-up" subtracts the median wall time of the same shape on a tiny
recording (the first events of the same one).
"""

from harness.bench.results import BenchPlan, BenchResults, Measured, net_rate
from harness.bench.rounds import export_payloads, run_bench
from harness.bench.yardsticks import naive_bytewax, plain_read

__all__ = ["BenchPlan", "BenchResults", "Measured", "export_payloads", "naive_bytewax",
           "net_rate", "plain_read", "run_bench"]
