"""Text as editors write it: titles, names, IP addresses, edit summaries (templates filled
in, `[[links]]` parsed to HTML as EventStreams sends `parsedcomment`)."""

from __future__ import annotations

import random
import re
from html import escape
from typing import Any

from harness.recording.synth.entities import User, path
from harness.recording.synth.vocabulary import (
    FIRST_NAMES,
    LAST_NAMES,
    V6_PREFIXES,
    WD_ACTIONS,
    WD_LANGS,
    WD_PROPS,
    WORDS,
)

__all__ = ["autocomment", "fill", "ip_address", "page_title", "parsed", "person",
           "wikidata_comment"]


_LINK = re.compile(r"\[\[:?([^\]|]+)(?:\|([^\]]*))?\]\]")


def parsed(text: str) -> str:
    """A small stand-in for MediaWiki's comment formatter: escape, then links."""

    def link(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        page, hash_, fragment = target.partition("#")
        return (f'<a href="/wiki/{path(page)}{hash_}{path(fragment)}" title="{escape(target)}">'
                f"{escape(label if label is not None else target)}</a>")

    out, pos = [], 0
    for match in _LINK.finditer(text):
        out.append(escape(text[pos:match.start()], quote=False))
        out.append(link(match))
        pos = match.end()
    out.append(escape(text[pos:], quote=False))
    return "".join(out)


def autocomment(section: str, rest: str) -> str:
    """A summary's `/* section */ rest` as MediaWiki renders it."""
    sep = ": " if rest else ""
    return (f'\u200e<span dir="auto"><span class="autocomment">{section}{sep}</span></span> '
            f"{parsed(rest)}").rstrip()


def _words(rng: random.Random, lang: str, n: int) -> str:
    """`n` words of `lang`, joined as that language writes them."""
    pool = WORDS[lang]
    sep = "" if lang in ("ja", "zh") else " "
    return sep.join(rng.choice(pool) for _ in range(n))


def page_title(rng: random.Random, lang: str) -> str:
    """An article title in `lang`: 1-4 words, words and a qualifier in parentheses, or (en)
    a person or "<year> in <word>"."""
    r = rng.random()
    if lang == "en" and r < 0.15:
        return f"{rng.choice(FIRST_NAMES['en'])} {rng.choice(LAST_NAMES['en'])}"
    if lang == "en" and r < 0.25:
        return f"{rng.randrange(1900, 2024)} in {_words(rng, 'en', 1)}"
    if r < 0.35:
        return f"{_words(rng, lang, 2)} ({_words(rng, 'en', 1).lower()})"
    return _words(rng, lang, rng.choice((1, 2, 2, 3, 3, 4)))


def ip_address(rng: random.Random) -> str:
    """An anonymous editor's address: IPv4 (65%) or IPv6."""
    if rng.random() < 0.65:
        return f"{rng.randrange(1, 224)}." + ".".join(str(rng.randrange(256)) for _ in range(3))
    return rng.choice(V6_PREFIXES) + "".join(f":{rng.getrandbits(16):X}" for _ in range(7))


def person(rng: random.Random, lang: str) -> str:
    """A person's name in `lang` (family name first, unspaced, in Japanese and Chinese)."""
    first, last = rng.choice(FIRST_NAMES[lang]), rng.choice(LAST_NAMES[lang])
    return last + first if lang in ("ja", "zh") else f"{first} {last}"


class _Slots(dict[str, Any]):
    """Template values drawn on first use, so unused placeholders cost nothing."""

    def __init__(self, rng: random.Random, lang: str, users: list[User]) -> None:
        super().__init__()
        self.rng, self.lang, self.users = rng, lang, users

    def __missing__(self, key: str) -> Any:
        rng = self.rng
        value: Any
        if key == "ip":
            value = ip_address(rng)
        elif key == "user":
            value = rng.choice(self.users).name
        elif key == "rev":
            value = rng.randrange(10**8, 10**9)
        elif key == "q":
            value = rng.randrange(1, 120_000_000)
        elif key == "url":
            value = f"https://www.flickr.com/photos/{rng.getrandbits(40)}"
        else:
            value = _words(rng, "en" if key == "word3" else self.lang, 1)
        self[key] = value
        return value


def fill(rng: random.Random, template: str, lang: str, users: list[User]) -> str:
    """An edit-summary template with its `{placeholders}` drawn."""
    return template.format_map(_Slots(rng, lang, users))


def wikidata_comment(rng: random.Random, users: list[User]) -> tuple[str, str]:
    """A Wikidata edit summary and its parsed form: a claim, a term, or an item update."""
    r = rng.random()
    if r < 0.5:
        action, label = rng.choice(WD_ACTIONS)
        pid, _ = rng.choice(WD_PROPS)
        rest = f"[[Property:{pid}]]: [[Q{rng.randrange(1, 120_000_000)}]]"
        if rng.random() < 0.4:
            batch = rng.randrange(100_000, 250_000)
            rest += (f", #quickstatements; [[:toollabs:quickstatements/#/batch/{batch}"
                     f"|batch #{batch}]] by [[User:{rng.choice(users).name}|]]")
    elif r < 0.8:
        lang = rng.choice(WD_LANGS)
        kind = rng.choice(("description", "label", "aliases"))
        action, label = f"wbset{kind}-add:1|{lang}", f"Added [{lang}] {kind}"
        script = {"ru": "ru", "uk": "ru", "ja": "ja"}.get(lang, "latin")
        rest = f"{_words(rng, script, 2)}, {_words(rng, 'en', 2).lower()}"
    else:
        action, label = "wbeditentity-update:0|", "Changed an Item"
        rest = (f"nl-description, [[User:{rng.choice(users).name}/Set-description|python code]]"
                f", #{rng.choice(('OpenRefine', 'mix-n-match', 'citation-tool'))}")
    comment = f"/* {action} */ {rest}"
    return comment, autocomment(label, rest)
