"""One `recentchange` event as EventStreams sends it (2023 schema): an edit, a new page, a
categorization, a log entry, or a canary."""

from __future__ import annotations

import random
import time
from typing import Any

from harness.eventstreams.ids import CANARY_DOMAIN, SCHEMA, STREAM, TOPIC
from harness.recording.synth.entities import Page, User, Wiki
from harness.recording.synth.vocabulary import LOG_KINDS, SECTIONS
from harness.recording.synth.wikitext import page_title, parsed
from harness.recording.synth.world import World

__all__ = ["Builder"]


def _uuid4(bits: int) -> str:
    """128 random bits as a version-4 UUID string (the version and variant bits forced)."""
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[bits & 3]}{h[17:20]}-{h[20:]}"


def _dt(ts: int) -> str:
    """Unix seconds as EventStreams' `meta.dt` (ISO-8601 UTC, `Z`)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class Builder:
    """Turns (user, wiki, type, time) into a recentchange dict, advancing the wiki's ids,
    its pages' revisions and lengths, and the stream's Kafka offset (`offset`, the last
    event's)."""

    __slots__ = ("dts", "offset", "rng", "world")

    def __init__(self, rng: random.Random, world: World) -> None:
        self.rng = rng
        self.world = world
        self.offset = rng.randrange(4_000_000_000, 5_000_000_000)
        self.dts: dict[int, str] = {}

    def meta(self, uri: str, domain: str, ts: int) -> dict[str, Any]:
        """The next event's `meta`: fresh request and event UUIDs, the next offset."""
        dts = self.dts
        dt = dts.get(ts)
        if dt is None:
            if len(dts) > 4096:
                dts.clear()
            dt = dts[ts] = _dt(ts)
        self.offset += 1
        bits = self.rng.getrandbits(256)
        return {
            "uri": uri, "request_id": _uuid4(bits >> 128), "id": _uuid4(bits & ((1 << 128) - 1)),
            "dt": dt, "domain": domain, "stream": STREAM, "topic": TOPIC, "partition": 0,
            "offset": self.offset,
        }

    def change(self, user: User, wiki: Wiki, kind: str, ts: int) -> dict[str, Any]:
        """A change of `kind` (`edit`, `new`, `categorize` or `log`) by `user` on `wiki`."""
        wiki.next_rc += 1 + (self.rng.random() < 0.3)
        if kind == "edit" or kind == "new":
            event, parsed_comment = self._revision(user, wiki, kind, ts)
        elif kind == "categorize":
            event, parsed_comment = self._categorize(user, wiki, ts)
        else:
            event, parsed_comment = self._log(user, wiki, ts)
        event["server_url"] = wiki.server
        event["server_name"] = wiki.domain
        event["server_script_path"] = "/w"
        event["wiki"] = wiki.name
        event["parsedcomment"] = parsed_comment
        return event

    def canary(self, ts: int) -> dict[str, Any]:
        """A canary event, as EventStreams sends one hourly to show the stream is alive."""
        server = "https://" + CANARY_DOMAIN
        return {
            "$schema": SCHEMA, "meta": self.meta(server, CANARY_DOMAIN, ts),
            "id": 0, "type": "edit", "namespace": 0, "title": "Canary", "comment": "canary event",
            "timestamp": ts, "bot": False, "server_url": server,
            "server_name": CANARY_DOMAIN, "server_script_path": "/w",
            "parsedcomment": "canary event",
        }

    def _head(self, kind: str, user: User, wiki: Wiki, page: Page, comment: str,
              ts: int) -> dict[str, Any]:
        """The fields every change opens with, in EventStreams' order."""
        return {
            "$schema": SCHEMA, "meta": self.meta(page.url, wiki.domain, ts),
            "id": wiki.next_rc, "type": kind, "namespace": page.ns, "title": page.title,
            "title_url": page.url, "comment": comment, "timestamp": ts, "user": user.name,
            "bot": user.bot,
        }

    def _revision(self, user: User, wiki: Wiki, kind: str,
                  ts: int) -> tuple[dict[str, Any], str]:
        """An edit of a page, or (`kind` `new`) a new page in place of one; and its
        parsed comment."""
        rng = self.rng
        rand = rng.random
        if kind == "new":
            page = self._new_page(wiki)
            comment, parsed_comment = wiki.new_comments[int(rand() * len(wiki.new_comments))]
        else:
            page = wiki.pages[int(rand() * len(wiki.pages))]
            comment, parsed_comment = self._comment(wiki, page)
        wiki.next_rev += 1 + int(rand() * 6)
        old_len, old_rev = page.length, page.rev
        if kind == "edit":
            delta = int(rng.gauss(0, 120 if rand() < 0.9 else 3000))
            page.length = max(0, old_len + delta)
        new_len = page.length
        page.rev = new_rev = wiki.next_rev
        event = self._head(kind, user, wiki, page, comment, ts)
        if kind == "edit":
            event["notify_url"] = f"{wiki.notify}diff={new_rev}&oldid={old_rev}"
            event["minor"] = rand() < 0.15
            if wiki.patrolled:
                event["patrolled"] = user.bot or rand() < 0.6
            event["length"] = {"old": old_len, "new": new_len}
            event["revision"] = {"old": old_rev, "new": new_rev}
        else:
            event["notify_url"] = f"{wiki.notify}oldid={new_rev}"
            event["minor"] = False
            if wiki.patrolled:
                event["patrolled"] = user.bot
            event["length"] = {"new": new_len}
            event["revision"] = {"new": new_rev}
        return event, parsed_comment

    def _categorize(self, user: User, wiki: Wiki, ts: int) -> tuple[dict[str, Any], str]:
        """A page added to or removed from a category; and its parsed comment."""
        rand = self.rng.random
        category = wiki.categories[int(rand() * len(wiki.categories))]
        member = wiki.pages[int(rand() * len(wiki.pages))]
        verb = "added to category" if rand() < 0.7 else "removed from category"
        event = self._head("categorize", user, wiki, category, f"[[:{member.title}]] {verb}", ts)
        event["notify_url"] = f"{wiki.notify}diff={member.rev}&oldid={member.rev - 1}"
        return event, (f'<a href="/wiki/{member.href}" title="{member.safe}">{member.safe}</a> '
                       f"{verb}")

    def _comment(self, wiki: Wiki, page: Page) -> tuple[str, str]:
        """An edit summary of `page` and its parsed form: on a Wikipedia 30% a section's
        autocomment, else one of the wiki's pool."""
        rng = self.rng
        if wiki.kind == "wikipedia" and rng.random() < 0.3:
            section = rng.choice(SECTIONS)
            text = rng.choice(("", "", "add", "update", "ce", "fix link", "Added source"))
            comment = f"/* {section} */ {text}" if text else f"/* {section} */"
            anchor = section.replace(" ", "_")
            parsed_comment = (
                f'<span dir="auto"><span class="autocomment"><a href="/wiki/{page.href}#'
                f'{anchor}" title="{page.safe}">→\u200e{section}</a>'
                f'{": " if text else ""}</span></span>{" " + text if text else ""}')
            return comment, parsed_comment
        return wiki.comments[int(rng.random() * len(wiki.comments))]

    def _new_page(self, wiki: Wiki) -> Page:
        """A new page (a Wikidata item, a Commons file, an article), taking a random old
        page's place so the wiki's page count stays the same."""
        rng = self.rng
        length = int(rng.lognormvariate(7.5, 1.0)) + 20
        if wiki.kind == "wikidata":
            wiki.next_q += 1
            page = Page(f"Q{wiki.next_q}", 0, wiki.wiki_base, length, 0)
        elif wiki.kind == "commons":
            title = f"File:{page_title(rng, 'en')} {rng.randrange(1, 99999)}.jpg"
            page = Page(title, 6, wiki.wiki_base, length, 0)
        else:
            page = Page(page_title(rng, wiki.lang), 0, wiki.wiki_base, length, 0)
        wiki.pages[int(rng.random() * len(wiki.pages))] = page
        return page

    def _log(self, user: User, wiki: Wiki, ts: int) -> tuple[dict[str, Any], str]:
        """A log entry (`LOG_KINDS`) about a page, or for `newusers` the user's own page;
        and its parsed comment."""
        rng = self.rng
        log_type, action, template = rng.choice(LOG_KINDS)
        page = wiki.pages[int(rng.random() * len(wiki.pages))]
        other = rng.choice(self.world.users).name
        params: dict[str, Any] | list[Any] = []
        comment = ""
        target = page
        if log_type == "newusers":
            target = Page(f"User:{user.name}", 2, wiki.wiki_base, 0, 0)
            params = {"userid": rng.randrange(1, 50_000_000)}
        elif log_type == "patrol":
            params = {"curid": page.rev, "previd": page.rev - rng.randrange(1, 99), "auto": 0}
        elif log_type in ("delete", "block"):
            comment = rng.choice(("Spam", "[[WP:CSD#G11|G11]]: Unambiguous advertising",
                                  "[[WP:Vandalism|Vandalism]]", "Long-term abuse"))
        event = self._head("log", user, wiki, target, comment, ts)
        event["log_id"] = wiki.next_rc // 3 + 7
        event["log_type"] = log_type
        event["log_action"] = action
        event["log_params"] = params
        event["log_action_comment"] = template.format(
            rev=page.rev, title=target.title, user=user.name, other=other,
            n=rng.randrange(1, 1300))
        return event, parsed(comment)
