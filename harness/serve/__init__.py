"""Playback: a local EventStreams-compatible server that plays a recording over HTTP.

- `server`: `EventStreamServer`, with the real service's faults (`faults`) on request;
- `wire`: the wire format (frames) as a server writes it;
- `positions`: an envelope's SSE id and event time, and where a resume starts.
"""
