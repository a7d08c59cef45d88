"""EventStreams: the Server-Sent Events service Wikimedia publishes edits on.

- `ids`: event identity (`meta.id`), SSE ids and resume positions, times;
- `wire`: the wire format (frames) as a server writes it;
- `client`: `Connection` (one HTTP GET, the transport) and `EventStream`
  (reconnecting, de-duplicating, backing off: the policy above it);
- `server`: `EventStreamServer`, a local compatible server playing a
  recording, with the real service's faults (`faults`) on request.
"""
