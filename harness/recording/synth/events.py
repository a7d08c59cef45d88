"""One `recentchange` event as EventStreams sends it (2023 schema): an edit, a new page, a
categorization, a log entry, or a canary."""

from __future__ import annotations

import random
import time
from typing import Any

from harness.eventstreams.ids import SCHEMA, STREAM, TOPIC
from harness.recording.synth.entities import Page, User, Wiki, path
from harness.recording.synth.vocabulary import LOG_KINDS, SECTIONS
from harness.recording.synth.wikitext import page_title, parsed
from harness.recording.synth.world import World

__all__ = ["Builder"]


def _uuid4(bits: int) -> str:
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[bits & 3]}{h[17:20]}-{h[20:]}"


def _dt(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class Builder:
    """Turns (user, wiki, type, time) into a recentchange dict."""

    __slots__ = ("dts", "offset", "rng", "world")

    def __init__(self, rng: random.Random, world: World) -> None:
        self.rng = rng
        self.world = world
        self.offset = rng.randrange(4_000_000_000, 5_000_000_000)
        self.dts: dict[int, str] = {}

    def meta(self, uri: str, domain: str, ts: int) -> dict[str, Any]:
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
        rng = self.rng
        rand = rng.random
        wiki.next_rc += 1 + (rand() < 0.3)
        if kind == "edit" or kind == "new":
            if kind == "new":
                page = self._new_page(wiki)
                comment, parsed = wiki.new_comments[int(rand() * len(wiki.new_comments))]
            else:
                page = wiki.pages[int(rand() * len(wiki.pages))]
                comment, parsed = self._comment(wiki, page)
            wiki.next_rev += 1 + int(rand() * 6)
            old_len, old_rev = page.length, page.rev
            if kind == "edit":
                delta = int(rng.gauss(0, 120 if rand() < 0.9 else 3000))
                page.length = max(0, old_len + delta)
            new_len = page.length
            page.rev = new_rev = wiki.next_rev
            event: dict[str, Any] = {
                "$schema": SCHEMA, "meta": self.meta(page.url, wiki.domain, ts),
                "id": wiki.next_rc, "type": kind, "namespace": page.ns, "title": page.title,
                "title_url": page.url, "comment": comment, "timestamp": ts, "user": user.name,
                "bot": user.bot,
            }
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
        elif kind == "categorize":
            page = wiki.categories[int(rand() * len(wiki.categories))]
            member = wiki.pages[int(rand() * len(wiki.pages))]
            verb = "added to category" if rand() < 0.7 else "removed from category"
            event = {
                "$schema": SCHEMA, "meta": self.meta(page.url, wiki.domain, ts),
                "id": wiki.next_rc, "type": kind, "namespace": 14, "title": page.title,
                "title_url": page.url, "comment": f"[[:{member.title}]] {verb}",
                "timestamp": ts, "user": user.name, "bot": user.bot,
                "notify_url": f"{wiki.notify}diff={member.rev}&oldid={member.rev - 1}",
            }
            parsed = (f'<a href="/wiki/{member.href}" title="{member.safe}">{member.safe}</a> '
                      f"{verb}")
        else:
            event, parsed = self._log(user, wiki, ts)
        event["server_url"] = wiki.server
        event["server_name"] = wiki.domain
        event["server_script_path"] = "/w"
        event["wiki"] = wiki.name
        event["parsedcomment"] = parsed
        return event

    def _comment(self, wiki: Wiki, page: Page) -> tuple[str, str]:
        rng = self.rng
        if wiki.kind == "wikipedia" and rng.random() < 0.3:
            section = rng.choice(SECTIONS)
            text = rng.choice(("", "", "add", "update", "ce", "fix link", "Added source"))
            comment = f"/* {section} */ {text}" if text else f"/* {section} */"
            anchor = section.replace(" ", "_")
            parsed = (f'<span dir="auto"><span class="autocomment"><a href="/wiki/{page.href}#'
                      f'{anchor}" title="{page.safe}">→\u200e{section}</a>'
                      f'{": " if text else ""}</span></span>{" " + text if text else ""}')
            return comment, parsed
        return wiki.comments[int(rng.random() * len(wiki.comments))]

    def _new_page(self, wiki: Wiki) -> Page:
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
        rng = self.rng
        log_type, action, template = rng.choice(LOG_KINDS)
        page = wiki.pages[int(rng.random() * len(wiki.pages))]
        other = rng.choice(self.world.users).name
        params: dict[str, Any] | list[Any] = []
        comment = ""
        title, ns, url = page.title, page.ns, page.url
        if log_type == "newusers":
            title, ns, url = f"User:{user.name}", 2, wiki.wiki_base + path(f"User:{user.name}")
            params = {"userid": rng.randrange(1, 50_000_000)}
        elif log_type == "patrol":
            params = {"curid": page.rev, "previd": page.rev - rng.randrange(1, 99), "auto": 0}
        elif log_type in ("delete", "block"):
            comment = rng.choice(("Spam", "[[WP:CSD#G11|G11]]: Unambiguous advertising",
                                  "[[WP:Vandalism|Vandalism]]", "Long-term abuse"))
        event = {
            "$schema": SCHEMA, "meta": self.meta(url, wiki.domain, ts), "id": wiki.next_rc,
            "type": "log", "namespace": ns, "title": title, "title_url": url, "comment": comment,
            "timestamp": ts, "user": user.name, "bot": user.bot,
            "log_id": wiki.next_rc // 3 + 7, "log_type": log_type, "log_action": action,
            "log_params": params,
            "log_action_comment": template.format(rev=page.rev, title=title, user=user.name,
                                                  other=other, n=rng.randrange(1, 1300)),
        }
        return event, parsed(comment)

    def canary(self, ts: int) -> dict[str, Any]:
        return {
            "$schema": SCHEMA, "meta": self.meta("https://canary", "canary", ts),
            "id": 0, "type": "edit", "namespace": 0, "title": "Canary", "comment": "canary event",
            "timestamp": ts, "bot": False, "server_url": "https://canary",
            "server_name": "canary", "server_script_path": "/w", "parsedcomment": "canary event",
        }
