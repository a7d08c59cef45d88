"""The things a synthetic stream is about: a wiki, its pages, its users."""

from __future__ import annotations

import random
from html import escape
from typing import Final
from urllib.parse import quote

__all__ = ["Page", "User", "Wiki", "path"]

_URL_SAFE: Final = ";@$!*(),/~:"


def path(title: str) -> str:
    """A page title as the path of its URL."""
    return quote(title.replace(" ", "_"), safe=_URL_SAFE)


class Page:
    """A page: its title, namespace, URL forms, length and latest revision."""

    __slots__ = ("href", "length", "ns", "rev", "safe", "title", "url")

    def __init__(self, title: str, ns: int, base: str, length: int, rev: int) -> None:
        self.title = title
        self.ns = ns
        self.href = path(title)
        self.url = base + self.href
        self.safe = escape(title)
        self.length = length
        self.rev = rev


class Wiki:
    """A wiki (`WIKIS` row) and its running rc, revision and item ids, pages,
    categories and pools of (summary, parsed summary)."""

    __slots__ = ("categories", "comments", "domain", "kind", "lang", "name", "new_comments",
                 "next_q", "next_rc", "next_rev", "notify", "pages", "patrolled", "server",
                 "wiki_base")

    def __init__(self, spec: tuple[str, str, float, str, str, bool], rng: random.Random) -> None:
        self.name, self.domain, _, self.kind, self.lang, self.patrolled = spec
        self.server = "https://" + self.domain
        self.wiki_base = self.server + "/wiki/"
        self.notify = self.server + "/w/index.php?"
        self.next_rc = rng.randrange(100_000_000, 2_000_000_000)
        self.next_rev = rng.randrange(100_000_000, 2_000_000_000)
        self.next_q = rng.randrange(120_000_000, 125_000_000)
        self.pages: list[Page] = []
        self.categories: list[Page] = []
        self.comments: list[tuple[str, str]] = []
        self.new_comments: list[tuple[str, str]] = []


class User:
    """An editor: name (an IP address for anonymous ones), bot flag, home wiki index."""

    __slots__ = ("bot", "home", "name")

    def __init__(self, name: str, bot: bool, home: int) -> None:
        self.name = name
        self.bot = bot
        self.home = home
