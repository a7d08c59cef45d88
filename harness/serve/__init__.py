"""Playback: a local EventStreams-compatible server that plays a recording over HTTP.

- `server`: `EventStreamServer`: requests checked and answered, the lifecycle;
- `httpd`: the HTTP plumbing (connection limit, head deadline, `Reject`);
- `seeking`: where a client starts (`Last-Event-ID`, `since`);
- `stream`: one connection's events, paced, with the real service's faults (`faults`);
- `wire`: the frames a server writes; `positions`: an envelope's SSE id and time;
- `stats`: `ServerStats`.
"""
