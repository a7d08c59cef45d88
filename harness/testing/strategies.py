"""Hypothesis strategies for realistic Wikimedia `recentchange` events and streams.

    from hypothesis import given
    from harness.testing import write_recording
    from harness.testing.strategies import event_streams

    @given(event_streams(max_size=300))
    def test_my_flow_matches_my_model(tmp_path_factory, events):
        path = write_recording(tmp_path_factory.mktemp("rec") / "r", events)
        assert run_flow(my_flow, path, key="wiki") == my_model(events)

Events follow the 2023 recentchange schema (`meta`, `user`, `wiki`,
`timestamp`, `type`, `title`, `bot`, ...). A stream's event times mostly
move forward a second or two at a time, with bursts (many events in one
second) and events that arrive late (up to `max_lag` seconds older than
the newest); optionally canaries (`meta.domain == "canary"`, no user or
wiki) and invalid lines (not JSON, no user, a string timestamp).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from hypothesis import strategies as st

__all__ = ["USERS", "WIKIS", "event_streams", "recentchange_events"]

WIKIS: tuple[str, ...] = ("enwiki", "dewiki", "frwiki", "wikidatawiki", "commonswiki",
                          "jawiki", "ruwiki", "eswiki")
USERS: tuple[str, ...] = ("Alice", "Bob", "ExampleBot", "Jürgen Müller", "东京太郎",
                          "203.0.113.7", "2001:db8::1", "QuickStatementsBot", "Ørjan",
                          "User with spaces")
_SERVERS = {"wikidatawiki": "www.wikidata.org", "commonswiki": "commons.wikimedia.org"}
_TYPES = ("edit", "edit", "edit", "new", "log", "categorize")


def _domain(wiki: str) -> str:
    if wiki in _SERVERS:
        return _SERVERS[wiki]
    return f"{wiki.removesuffix('wiki')}.wikipedia.org"


def _event(user: str, wiki: str, timestamp: int, kind: str, title: str, rev: int,
           offset: int) -> dict[str, Any]:
    domain = _domain(wiki)
    dt = datetime.fromtimestamp(timestamp, timezone.utc).isoformat().replace("+00:00", "Z")
    ident = str(uuid.UUID(int=(offset * 2654435761 + rev) % (1 << 128), version=4))
    event: dict[str, Any] = {
        "$schema": "/mediawiki/recentchange/1.0.0",
        "meta": {"uri": f"https://{domain}/wiki/{title.replace(' ', '_')}",
                 "request_id": ident, "id": ident, "dt": dt, "domain": domain,
                 "stream": "mediawiki.recentchange", "topic": "eqiad.mediawiki.recentchange",
                 "partition": 0, "offset": offset},
        "id": rev * 3 + 1, "type": kind, "namespace": 0, "title": title,
        "title_url": f"https://{domain}/wiki/{title.replace(' ', '_')}",
        "comment": "", "timestamp": timestamp, "user": user,
        "bot": user.endswith("Bot"), "notify_url": f"https://{domain}/w/index.php?diff={rev}",
        "server_url": f"https://{domain}", "server_name": domain,
        "server_script_path": "/w", "wiki": wiki, "parsedcomment": "",
    }
    if kind in ("edit", "new"):
        event["minor"] = False
        event["length"] = {"old": None if kind == "new" else 1000 + rev % 500,
                           "new": 1000 + rev % 700}
        event["revision"] = {"old": None if kind == "new" else rev - 1, "new": rev}
    return event


def recentchange_events(*, users: Sequence[str] = USERS, wikis: Sequence[str] = WIKIS,
                        start: int = 1_700_000_000, span: int = 600
                        ) -> st.SearchStrategy[dict[str, Any]]:
    """One realistic recentchange event (a dict as EventStreams sends it)."""
    return st.builds(
        _event, st.sampled_from(users), st.sampled_from(wikis),
        st.integers(start, start + span), st.sampled_from(_TYPES),
        st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
                min_size=1, max_size=30),
        st.integers(1, 10**9), st.integers(0, 10**9))


@st.composite
def event_streams(draw: st.DrawFn, min_size: int = 0, max_size: int = 200, *,
                  users: Sequence[str] = USERS, wikis: Sequence[str] = WIKIS,
                  start: int = 1_700_000_000, max_lag: int = 30, canaries: bool = True,
                  invalid: bool = True) -> list[dict[str, Any] | bytes]:
    """A stream of events in arrival order: mostly forward in time, with bursts, late
    events up to `max_lag` seconds behind the newest, and (optionally) canaries and
    invalid lines. Items are dicts, or bytes for a line that is not JSON."""
    n = draw(st.integers(min_size, max_size))
    newest = start
    out: list[dict[str, Any] | bytes] = []
    for offset in range(n):
        step = draw(st.sampled_from((0, 0, 0, 1, 1, 2, 3, -1)))  # 0: a burst
        if step < 0:
            ts = newest - draw(st.integers(0, max_lag))  # arrives late
        else:
            newest += step
            ts = newest
        kind = draw(st.integers(0, 99))
        if canaries and kind == 0:
            out.append({"meta": {"domain": "canary", "id": f"canary-{offset}",
                                 "dt": datetime.fromtimestamp(ts, timezone.utc).isoformat()},
                        "timestamp": ts, "type": "edit"})
            continue
        if invalid and kind == 1:
            out.append(draw(st.sampled_from((b"{not json", b'"a JSON string"'))))
            continue
        event = _event(draw(st.sampled_from(users)), draw(st.sampled_from(wikis)), ts,
                       draw(st.sampled_from(_TYPES)), f"Page {draw(st.integers(0, 50))}",
                       1_000_000 + offset, offset)
        if invalid and kind == 2:
            del event["user"]
        elif invalid and kind == 3:
            event["timestamp"] = str(ts)
        out.append(event)
    return out
