"""EventStreams: the Server-Sent Events service Wikimedia publishes edits on, as a
client sees it (the first stage: everything else reads what this one receives).

- `ids`: event identity (`meta.id`), SSE ids and resume positions, times, the schema;
- `urls`, `sse`, `arrivals`: URLs, SSE framing, receive times;
- `transport`: one HTTP GET behind one seam (`Transport`; `Urllib3Transport` is real);
- `connection`: one attempt, its answer judged; `stream`: `EventStream`, the policy
  above it (reconnecting, resuming, de-duplicating, backing off);
- `client`: the names the rest of the harness imports.
"""
