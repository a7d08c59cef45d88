"""EventStreams: the Server-Sent Events service Wikimedia publishes edits on, as a
client sees it (the first stage: everything else reads what this one receives).

- `ids`: event identity (`meta.id`), SSE ids and resume positions, times;
- `client`: `Connection` (one HTTP GET, the transport) and `EventStream`
  (reconnecting, de-duplicating, backing off: the policy above it).
"""
