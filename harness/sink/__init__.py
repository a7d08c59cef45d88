"""Where a flow's items go: `jsonl.JsonSink` (one canonical JSON line per item, and
its exactly-once form under recovery) and `items.Items` (the lines, merged in output
order, in bounded memory)."""
