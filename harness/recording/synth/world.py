"""The world a synthetic stream happens in, drawn once from the seed: wikis with their
pages, heavy-tailed users (registered, anonymous, bots), and lookup tables that make
drawing them by weight one index."""

from __future__ import annotations

import random

from harness.recording.synth.entities import Page, User, Wiki
from harness.recording.synth.vocabulary import (
    BOT_PARTS,
    COMMONS_SUMMARIES,
    HANDLE_PARTS,
    NAMESPACES,
    NEW_SUMMARIES,
    SUMMARIES,
    WIKIS,
)
from harness.recording.synth.wikitext import (
    autocomment,
    fill,
    ip_address,
    page_title,
    parsed,
    person,
    wikidata_comment,
)

__all__ = ["World"]


def _make_user(rng: random.Random, rank: int, home: int) -> User:
    """The user of weight rank `rank`: a bot (20% of the top 150, 4% after), an IP, a
    person's name in the home wiki's language or English, or a handle."""
    lang = WIKIS[home][4]
    r = rng.random()
    if r < (0.2 if rank < 150 else 0.04):
        stem = rng.choice(BOT_PARTS) + rng.choice(("", "", "Data", "Link", str(rank)))
        return User(stem + "Bot", True, home)
    if r < 0.32:
        return User(ip_address(rng), False, home)
    if r < 0.55 and lang != "en":
        return User(person(rng, lang), False, home)
    if r < 0.7:
        name = person(rng, "en")
        if rng.random() < 0.5:
            name = name.replace(" ", rng.choice(("", "_", " ", "."))) + str(rng.randrange(100))
        return User(name, False, home)
    name = rng.choice(HANDLE_PARTS) + rng.choice(HANDLE_PARTS).lower()
    return User(name + rng.choice(("", "", str(rank), str(rng.randrange(10, 999)))), False, home)


def _lookup(weights: list[float], size: int) -> list[int]:
    """A table of indexes, each repeated in proportion to its weight."""
    total = sum(weights)
    table: list[int] = []
    for index, weight in enumerate(weights):
        table.extend([index] * max(1, round(weight / total * size)))
    return table


class World:
    """Everything drawn once per seed: wikis, pages, users and comment pools."""

    def __init__(self, rng: random.Random, n_users: int = 3000) -> None:
        self.wikis = [Wiki(spec, rng) for spec in WIKIS]
        self.wiki_table = _lookup([spec[2] for spec in WIKIS], 1000)
        wiki_table = self.wiki_table
        users: list[User] = []
        names: set[str] = set()
        for rank in range(n_users):
            user = _make_user(rng, rank, wiki_table[rng.randrange(len(wiki_table))])
            if user.name not in names:
                names.add(user.name)
                users.append(user)
        self.users = users
        self.bots = [u for u in users if u.bot]
        self.user_table = _lookup([1.0 / (rank + 6) ** 1.05 for rank in range(len(users))],
                                  1 << 16)
        for wiki, spec in zip(self.wikis, WIKIS, strict=True):
            self._fill_wiki(rng, wiki, 64 if spec[2] < 10 else 256 if spec[2] < 20 else 512)

    def _fill_wiki(self, rng: random.Random, wiki: Wiki, n_pages: int) -> None:
        users, lang, base = self.users, wiki.lang, wiki.wiki_base
        for _ in range(n_pages):
            length = int(rng.lognormvariate(8.5, 1.2)) + 50
            rev = wiki.next_rev - rng.randrange(1, 50_000_000)
            if wiki.kind == "wikidata":
                title, ns = f"Q{rng.randrange(1, 120_000_000)}", 0
                if rng.random() < 0.05:
                    title, ns = f"Property:P{rng.randrange(1, 12_000)}", 120
                elif rng.random() < 0.05:
                    title, ns = f"Lexeme:L{rng.randrange(1, 1_300_000)}", 146
            elif wiki.kind == "commons":
                if rng.random() < 0.8:
                    ext = rng.choice(("jpg", "jpg", "jpg", "png", "svg", "tif", "pdf"))
                    title = f"File:{page_title(rng, 'en')} {rng.randrange(1, 9999)}.{ext}"
                    ns = 6
                else:
                    title, ns = f"Category:{page_title(rng, 'en')}", 14
            else:
                ns, prefix = rng.choice(NAMESPACES)
                title = prefix + page_title(rng, lang)
            wiki.pages.append(Page(title, ns, base, length, rev))
        for _ in range(16):
            cat_lang = "en" if wiki.kind != "wikipedia" else lang
            wiki.categories.append(
                Page(f"Category:{page_title(rng, cat_lang)}", 14, base, 0, 0))
        for _ in range(n_pages // 2):
            if wiki.kind == "wikidata":
                wiki.comments.append(wikidata_comment(rng, users))
                continue
            pool: tuple[str, ...] = COMMONS_SUMMARIES if wiki.kind == "commons" else SUMMARIES
            text = fill(rng, rng.choice(pool), lang, users)
            wiki.comments.append((text, parsed(text)))
        for _ in range(16):
            if wiki.kind == "wikidata":
                text = "/* wbeditentity-create-item:0| */"
                wiki.new_comments.append((text, autocomment("Created a new Item", "")))
                continue
            pool = COMMONS_SUMMARIES[:2] if wiki.kind == "commons" else NEW_SUMMARIES
            text = fill(rng, rng.choice(pool), lang, users)
            wiki.new_comments.append((text, parsed(text)))
