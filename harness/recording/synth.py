"""Deterministic synthetic Wikimedia EventStreams `recentchange` events.

Events follow the 2023 recentchange schema and arrive the way a live client
sees them: a Poisson background of 25-50 events per second over a mix of
wikis, heavy-tailed users (registered, anonymous IPv4/IPv6, bots), fast-bot
bursts, hourly canaries, a few late and a few invalid lines. Everything is
drawn from one `random.Random(seed)`; the output for a seed is a prefix of
the output for any larger `count`.

Guarantees relied on by tests and benchmarks: with `count >= 1000` at least
one canary and one invalid line of each kind (see `INVALID_KINDS`); with
`count >= 2000` at least one burst of a bot above 10 edits per second and at
least one late event (more than 10 s older than its user's newest event).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html import escape
from typing import Any, Final
from urllib.parse import quote

import orjson

__all__ = ["INVALID_KINDS", "SynthEvent", "synthetic_events"]

INVALID_KINDS: Final = ("not-json", "no-user", "timestamp-str", "timestamp-float", "user-number")

_SCHEMA: Final = "/mediawiki/recentchange/1.0.0"
_STREAM: Final = "mediawiki.recentchange"
_TOPIC: Final = "eqiad.mediawiki.recentchange"
_ID_TS: Final = '[{"topic":"' + _TOPIC + '","partition":0,"timestamp":'
_ID_OFFSET: Final = '[{"topic":"' + _TOPIC + '","partition":0,"offset":'
_INF: Final = float("inf")


@dataclass(frozen=True, slots=True)
class SynthEvent:
    """One server-sent event as the recorder would receive it."""

    payload: bytes  # the SSE `data:` line content, normally compact JSON, no newline
    sse_id: str  # the SSE `id:` field, raw string
    received: float  # unix seconds when the client received it


# ------------------------------------------------------------------ vocabulary

_WORDS: Final[dict[str, tuple[str, ...]]] = {
    "en": (
        "River", "Battle", "Station", "Church", "County", "Album", "History", "Bridge", "Lake",
        "School", "Museum", "Castle", "Island", "Railway", "Festival", "Mountain", "Party",
        "Election", "Airport", "University", "Football", "Club", "Park", "Valley", "Theatre",
        "Street", "Hospital", "Tower", "Harbour", "Cathedral", "Empire", "Kingdom", "Dynasty",
        "Championship", "Cup", "League", "Orchestra", "Band", "Novel", "Film", "Series",
        "Symphony", "Treaty", "Revolution", "Society", "Company", "Library", "Garden", "North",
        "South", "Grand", "Royal", "National", "Central", "Old", "New", "Upper", "Lower",
    ),
    "de": (
        "Straße", "Bahnhof", "Kirche", "Schloss", "Fluss", "Geschichte", "München", "Köln",
        "Düsseldorf", "Gemeinde", "Landkreis", "Burg", "Brücke", "Wahl", "Fußball", "Verein",
        "Universität", "Kloster", "Rathaus", "Österreich", "Zürich", "Mühle", "See", "Tal",
    ),
    "fr": (
        "Église", "Château", "Rivière", "Gare", "Histoire", "Montréal", "Élection", "Abbaye",
        "Pont", "Lycée", "Université", "Société", "Île", "Forêt", "Musée", "Théâtre", "Côte",
        "Saint", "Fête", "Bataille", "Département", "Commune", "Cathédrale", "Rue",
    ),
    "latin": (
        "Río", "Estación", "Iglesia", "São", "Paulo", "Łódź", "Kraków", "Göteborg", "Ciudad",
        "Museo", "Batalla", "Città", "Università", "Ponte", "Stazione", "Kościół", "Rzeka",
        "Kerk", "Station", "Kyrka", "Älv", "Sjö", "Castelo", "Praça", "Guerra", "Liga",
    ),
    "ru": (
        "Москва", "Река", "Церковь", "Война", "Киев", "Улица", "Район", "Станция", "Собор",  # noqa: RUF001
        "Университет", "Озеро", "Битва", "История", "Область", "Город", "Музей", "Театр",
        "Площадь", "Київ", "Львів", "Вулиця", "Річка", "Село", "Поселение",
    ),
    "ja": (
        "東京", "大阪", "京都", "駅", "鉄道", "歴史", "大学", "高等学校", "寺", "神社", "城",
        "川", "山", "線", "戦争", "株式会社", "日本", "放送", "選挙", "公園", "橋", "町",
    ),
    "zh": (
        "北京", "上海", "中国", "电影", "大学", "历史", "铁路", "车站", "公司", "战争", "河",
        "山", "省", "县", "乡", "镇", "寺", "电视剧", "足球", "俱乐部", "选举", "公园",
    ),
    "ar": (
        "القاهرة", "جامعة", "نهر", "مسجد", "محافظة", "معركة", "تاريخ", "مدينة", "قرية",
        "نادي", "كرة", "القدم", "انتخابات", "متحف", "شارع", "جزيرة", "دمشق", "بغداد",
    ),
    "vi": (
        "Hà Nội", "Sông", "Trường", "Đại học", "Chùa", "Tỉnh", "Huyện", "Xã", "Lịch sử",
        "Chiến tranh", "Thành phố", "Hồ", "Núi", "Đường", "Cầu", "Bảo tàng", "Nhà thờ",
    ),
}

_FIRST_NAMES: Final[dict[str, tuple[str, ...]]] = {
    "en": (
        "John", "Mary", "David", "Sarah", "Michael", "Emma", "James", "Laura", "Peter", "Anna",
        "Robert", "Linda", "Thomas", "Karen", "Daniel", "Alice", "Mark", "Helen", "Paul", "Ruth",
    ),
    "de": ("Jürgen", "Björn", "Günther", "Jörg", "Anja", "Sören", "Käthe", "Uwe", "Märta"),
    "fr": ("François", "Zoë", "Hélène", "Jérôme", "Gaëlle", "Noël", "Anaïs", "Émile", "Loïc"),
    "latin": ("José", "María", "Łukasz", "Bjørn", "Ångström", "João", "Žofie", "Ørjan", "Ñico"),
    "ru": ("Дмитрий", "Сергей", "Анна", "Ольга", "Алексей", "Олександр", "Наталія", "Игорь"),
    "ja": ("太郎", "花子", "健", "さくら", "翔太", "美咲", "大輔"),
    "zh": ("明", "芳", "伟", "静", "磊", "婷", "强"),
    "ar": ("محمد", "أحمد", "فاطمة", "علي", "مريم", "يوسف"),
    "vi": ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Đặng"),
}

_LAST_NAMES: Final[dict[str, tuple[str, ...]]] = {
    "en": (
        "Smith", "Jones", "Taylor", "Brown", "Wilson", "Evans", "Walker", "Wright", "Hall",
        "Green", "Baker", "Hughes", "Clarke", "Turner", "Cooper", "Morris", "Reed", "Price",
    ),
    "de": ("Müller", "Schäfer", "Groß", "Köhler", "Weiß", "Bäcker", "Schröder", "Förster"),
    "fr": ("Lefèvre", "Bénard", "Girardot", "Mercier", "Fournier", "Gérard", "Dubois", "Roché"),
    "latin": ("Ramírez", "Núñez", "Wójcik", "Nørgaard", "Gonçalves", "Åberg", "Dvořák", "Çelik"),
    "ru": ("Иванов", "Смирнова", "Кузнецов", "Попов", "Шевченко", "Коваленко", "Соколов"),
    "ja": ("山田", "佐藤", "鈴木", "高橋", "田中", "渡辺"),
    "zh": ("李", "王", "张", "刘", "陈", "杨"),
    "ar": ("الحسن", "المصري", "العلي", "الخطيب", "النجار"),
    "vi": ("Văn An", "Thị Hoa", "Minh Tuấn", "Quang Huy", "Thu Trang"),
}

_HANDLE_PARTS: Final = (
    "wiki", "Editor", "Gnome", "Histor", "Cat", "Fox", "Owl", "Star", "Moon", "River", "Pixel",
    "Quill", "Scribe", "Atlas", "Nord", "Blue", "Red", "Green", "Iron", "Silver", "Maple",
)

_BOT_PARTS: Final = (
    "Succu", "Krd", "Delta", "Cewbot", "Cita", "Link", "Archive", "Quick", "Ref", "Cat", "Info",
    "Hay", "Moss", "Edo", "Matlin", "Pi", "Lsj", "Mr. Ibrahem ", "Data", "Commons", "Sig", "Tag",
)

_SECTIONS: Final = (
    "Career", "Early life", "References", "External links", "History", "Personal life",
    "Biography", "Track listing", "Reception", "Episodes", "Cast", "Results", "Geography",
    "Demographics", "Awards and nominations", "Discography", "See also", "Production",
)

_SUMMARIES: Final = (
    "", "", "", "", "", "Fixed typo", "copyedit", "Added citation", "ce", "+ref", "update",
    "Update infobox", "Reverted 1 edit by [[Special:Contributions/{ip}|{ip}]]",
    "Rescuing 1 sources and tagging 0 as dead.) #IABot (v2.0.9.5",
    "clean up, [[WP:AWB/T|typo(s) fixed]]: recieved → received",
    "Reverted edits by [[Special:Contributions/{ip}|{ip}]] ([[User talk:{ip}|talk]]) to last "
    "version by {user}",
    "Undid revision {rev} by [[Special:Contributions/{user}|{user}]] ([[User talk:{user}|talk]])"
    " unsourced",
    "Added [[Category:{word} {word2}]]",
    "Filled in 2 bare reference(s) with [[:en:WP:REFILL|reFill 2]]",
    "Importing Wikidata [[Wikidata:Short descriptions|short description]]: \"{word} in {word2}\"",
    "[[WP:AES|←]]Redirected page to [[{word} {word2}]]",
    "Nominated for deletion; see [[:Wikipedia:Articles for deletion/{word} {word2}]].",
    "Reverting possible vandalism by [[Special:Contributions/{ip}|{ip}]] to version by {user}.",
)

_NEW_SUMMARIES: Final = (
    "Created page with '{word} {word2} is a {word3}'",
    "[[WP:AES|←]]Created page with '{{{{Short description|{word} in {word2}}}}}'",
    "Redirect to [[{word} {word2}]]",
    "new article",
    "Created by translating the page \"[[:en:{word} {word2}|{word} {word2}]]\"",
)

_WD_PROPS: Final = (
    ("P31", "instance of"), ("P279", "subclass of"), ("P17", "country"), ("P131", "located in"),
    ("P625", "coordinate location"), ("P569", "date of birth"), ("P106", "occupation"),
    ("P27", "country of citizenship"), ("P50", "author"), ("P577", "publication date"),
    ("P1476", "title"), ("P356", "DOI"), ("P698", "PubMed ID"), ("P2093", "author name string"),
    ("P1433", "published in"), ("P248", "stated in"), ("P813", "retrieved"), ("P21", "sex"),
)

_WD_LANGS: Final = ("en", "de", "fr", "es", "it", "nl", "ru", "ja", "pt", "sv", "pl", "uk")

_WD_ACTIONS: Final = (
    ("wbsetclaim-create:2||1", "Created claim"),
    ("wbcreateclaim-create:1|", "Created claim"),
    ("wbsetreference-add:2|", "Added reference to claim"),
    ("wbsetqualifier-add:1|", "Added qualifier"),
    ("wbremoveclaims-remove:1|", "Removed claim"),
    ("wbsetclaim-update:2||1", "Changed claim"),
)

_COMMONS_SUMMARIES: Final = (
    "Uploaded a work by {user} from {url} with UploadWizard",
    "Uploaded own work with UploadWizard",
    "Removed [[Category:{word}]]; Added [[Category:{word} {word2}]] using "
    "[[Help:Gadget-HotCat|HotCat]]",
    "Adding [[Category:{word} in {word2}]]",
    "Bot: Adding {{{{Wikidata Infobox}}}}",
    "/* wbeditentity-update:0| */ Structured data: depicts [[Q{q}]]",
    "Transferred from en.wikipedia by [[User:{user}|{user}]]",
    "",
)

_LOG_KINDS: Final = (
    ("newusers", "create", "New user account"),
    ("patrol", "patrol", "marked revision {rev} of [[{title}]] patrolled"),
    ("thanks", "thank", "{user} thanked {other}"),
    ("delete", "delete", "deleted page [[{title}]]"),
    ("abusefilter", "hit", "{user} triggered [[Special:AbuseFilter/{n}|filter {n}]], performing "
     "the action \"edit\" on [[{title}]]. Actions taken: Tag"),
    ("block", "block", "blocked [[User:{other}|{other}]] with an expiration time of 31 hours"),
)

# name, domain, weight, kind, language, has `patrolled`
_WIKIS: Final = (
    ("wikidatawiki", "www.wikidata.org", 30.0, "wikidata", "en", True),
    ("commonswiki", "commons.wikimedia.org", 17.0, "commons", "en", True),
    ("enwiki", "en.wikipedia.org", 14.0, "wikipedia", "en", False),
    ("dewiki", "de.wikipedia.org", 5.0, "wikipedia", "de", True),
    ("frwiki", "fr.wikipedia.org", 5.0, "wikipedia", "fr", False),
    ("eswiki", "es.wikipedia.org", 4.0, "wikipedia", "latin", False),
    ("itwiki", "it.wikipedia.org", 3.0, "wikipedia", "latin", False),
    ("ruwiki", "ru.wikipedia.org", 3.0, "wikipedia", "ru", True),
    ("jawiki", "ja.wikipedia.org", 3.0, "wikipedia", "ja", False),
    ("zhwiki", "zh.wikipedia.org", 2.0, "wikipedia", "zh", False),
    ("ptwiki", "pt.wikipedia.org", 2.0, "wikipedia", "latin", False),
    ("plwiki", "pl.wikipedia.org", 1.5, "wikipedia", "latin", True),
    ("nlwiki", "nl.wikipedia.org", 1.5, "wikipedia", "latin", False),
    ("ukwiki", "uk.wikipedia.org", 1.5, "wikipedia", "ru", True),
    ("arwiki", "ar.wikipedia.org", 1.5, "wikipedia", "ar", False),
    ("viwiki", "vi.wikipedia.org", 1.0, "wikipedia", "vi", False),
    ("svwiki", "sv.wikipedia.org", 1.0, "wikipedia", "latin", True),
    ("enwiktionary", "en.wiktionary.org", 2.0, "wikipedia", "en", True),
    ("metawiki", "meta.wikimedia.org", 0.5, "wikipedia", "en", True),
)

_NAMESPACES: Final = (
    (0, ""), (0, ""), (0, ""), (0, ""), (0, ""), (0, ""), (0, ""), (0, ""), (1, "Talk:"),
    (2, "User:"), (3, "User talk:"), (4, "Wikipedia:"), (10, "Template:"), (118, "Draft:"),
)

_LINK = re.compile(r"\[\[:?([^\]|]+)(?:\|([^\]]*))?\]\]")
_URL_SAFE: Final = ";@$!*(),/~:"
_TYPE_TABLE: Final = ("edit",) * 78 + ("categorize",) * 12 + ("log",) * 6 + ("new",) * 4
_NOT_JSON: Final = (
    b'{"truncated": ', b"<html>503</html>",
    b"<html><body><h1>503 Service Unavailable</h1></body></html>",
    b"upstream connect error or disconnect/reset before headers",
)


# ----------------------------------------------------------------- the world


def _path(title: str) -> str:
    return quote(title.replace(" ", "_"), safe=_URL_SAFE)


def _parse(text: str) -> str:
    """A small stand-in for MediaWiki's comment formatter: escape, then links."""

    def link(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        page, hash_, fragment = target.partition("#")
        return (f'<a href="/wiki/{_path(page)}{hash_}{_path(fragment)}" title="{escape(target)}">'
                f"{escape(label if label is not None else target)}</a>")

    out, pos = [], 0
    for match in _LINK.finditer(text):
        out.append(escape(text[pos:match.start()], quote=False))
        out.append(link(match))
        pos = match.end()
    out.append(escape(text[pos:], quote=False))
    return "".join(out)


def _autocomment(section: str, rest: str) -> str:
    sep = ": " if rest else ""
    return (f'\u200e<span dir="auto"><span class="autocomment">{section}{sep}</span></span> '
            f"{_parse(rest)}").rstrip()


class _Page:
    __slots__ = ("href", "length", "ns", "rev", "safe", "title", "url")

    def __init__(self, title: str, ns: int, base: str, length: int, rev: int) -> None:
        self.title = title
        self.ns = ns
        self.href = _path(title)
        self.url = base + self.href
        self.safe = escape(title)
        self.length = length
        self.rev = rev


class _Wiki:
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
        self.pages: list[_Page] = []
        self.categories: list[_Page] = []
        self.comments: list[tuple[str, str]] = []
        self.new_comments: list[tuple[str, str]] = []


class _User:
    __slots__ = ("bot", "home", "name")

    def __init__(self, name: str, bot: bool, home: int) -> None:
        self.name = name
        self.bot = bot
        self.home = home


def _words(rng: random.Random, lang: str, n: int) -> str:
    pool = _WORDS[lang]
    sep = "" if lang in ("ja", "zh") else " "
    return sep.join(rng.choice(pool) for _ in range(n))


def _title(rng: random.Random, lang: str) -> str:
    r = rng.random()
    if lang == "en" and r < 0.15:
        return f"{rng.choice(_FIRST_NAMES['en'])} {rng.choice(_LAST_NAMES['en'])}"
    if lang == "en" and r < 0.25:
        return f"{rng.randrange(1900, 2024)} in {_words(rng, 'en', 1)}"
    if r < 0.35:
        return f"{_words(rng, lang, 2)} ({_words(rng, 'en', 1).lower()})"
    return _words(rng, lang, rng.choice((1, 2, 2, 3, 3, 4)))


_V6_PREFIXES: Final = ("2601", "2600", "2A02", "2A01", "2001", "2405", "2409", "240E", "2804")


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.65:
        return f"{rng.randrange(1, 224)}." + ".".join(str(rng.randrange(256)) for _ in range(3))
    return rng.choice(_V6_PREFIXES) + "".join(f":{rng.getrandbits(16):X}" for _ in range(7))


def _person(rng: random.Random, lang: str) -> str:
    first, last = rng.choice(_FIRST_NAMES[lang]), rng.choice(_LAST_NAMES[lang])
    return last + first if lang in ("ja", "zh") else f"{first} {last}"


class _Slots(dict[str, Any]):
    """Template values drawn on first use, so unused placeholders cost nothing."""

    def __init__(self, rng: random.Random, lang: str, users: list[_User]) -> None:
        super().__init__()
        self.rng, self.lang, self.users = rng, lang, users

    def __missing__(self, key: str) -> Any:
        rng = self.rng
        value: Any
        if key == "ip":
            value = _ip(rng)
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


def _fill(rng: random.Random, template: str, lang: str, users: list[_User]) -> str:
    return template.format_map(_Slots(rng, lang, users))


def _wikidata_comment(rng: random.Random, users: list[_User]) -> tuple[str, str]:
    r = rng.random()
    if r < 0.5:
        action, label = rng.choice(_WD_ACTIONS)
        pid, _ = rng.choice(_WD_PROPS)
        rest = f"[[Property:{pid}]]: [[Q{rng.randrange(1, 120_000_000)}]]"
        if rng.random() < 0.4:
            batch = rng.randrange(100_000, 250_000)
            rest += (f", #quickstatements; [[:toollabs:quickstatements/#/batch/{batch}"
                     f"|batch #{batch}]] by [[User:{rng.choice(users).name}|]]")
    elif r < 0.8:
        lang = rng.choice(_WD_LANGS)
        kind = rng.choice(("description", "label", "aliases"))
        action, label = f"wbset{kind}-add:1|{lang}", f"Added [{lang}] {kind}"
        script = {"ru": "ru", "uk": "ru", "ja": "ja"}.get(lang, "latin")
        rest = f"{_words(rng, script, 2)}, {_words(rng, 'en', 2).lower()}"
    else:
        action, label = "wbeditentity-update:0|", "Changed an Item"
        rest = (f"nl-description, [[User:{rng.choice(users).name}/Set-description|python code]]"
                f", #{rng.choice(('OpenRefine', 'mix-n-match', 'citation-tool'))}")
    comment = f"/* {action} */ {rest}"
    return comment, _autocomment(label, rest)


def _make_user(rng: random.Random, rank: int, home: int) -> _User:
    lang = _WIKIS[home][4]
    r = rng.random()
    if r < (0.2 if rank < 150 else 0.04):
        stem = rng.choice(_BOT_PARTS) + rng.choice(("", "", "Data", "Link", str(rank)))
        return _User(stem + "Bot", True, home)
    if r < 0.32:
        return _User(_ip(rng), False, home)
    if r < 0.55 and lang != "en":
        return _User(_person(rng, lang), False, home)
    if r < 0.7:
        name = _person(rng, "en")
        if rng.random() < 0.5:
            name = name.replace(" ", rng.choice(("", "_", " ", "."))) + str(rng.randrange(100))
        return _User(name, False, home)
    name = rng.choice(_HANDLE_PARTS) + rng.choice(_HANDLE_PARTS).lower()
    return _User(name + rng.choice(("", "", str(rank), str(rng.randrange(10, 999)))), False, home)


def _lookup(weights: list[float], size: int) -> list[int]:
    """A table of indexes, each repeated in proportion to its weight."""
    total = sum(weights)
    table: list[int] = []
    for index, weight in enumerate(weights):
        table.extend([index] * max(1, round(weight / total * size)))
    return table


class _World:
    """Everything drawn once per seed: wikis, pages, users and comment pools."""

    def __init__(self, rng: random.Random, n_users: int = 3000) -> None:
        self.wikis = [_Wiki(spec, rng) for spec in _WIKIS]
        self.wiki_table = _lookup([spec[2] for spec in _WIKIS], 1000)
        wiki_table = self.wiki_table
        users: list[_User] = []
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
        for wiki, spec in zip(self.wikis, _WIKIS, strict=True):
            self._fill_wiki(rng, wiki, 64 if spec[2] < 10 else 256 if spec[2] < 20 else 512)

    def _fill_wiki(self, rng: random.Random, wiki: _Wiki, n_pages: int) -> None:
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
                    title = f"File:{_title(rng, 'en')} {rng.randrange(1, 9999)}.{ext}"
                    ns = 6
                else:
                    title, ns = f"Category:{_title(rng, 'en')}", 14
            else:
                ns, prefix = rng.choice(_NAMESPACES)
                title = prefix + _title(rng, lang)
            wiki.pages.append(_Page(title, ns, base, length, rev))
        for _ in range(16):
            cat_lang = "en" if wiki.kind != "wikipedia" else lang
            wiki.categories.append(
                _Page(f"Category:{_title(rng, cat_lang)}", 14, base, 0, 0))
        for _ in range(n_pages // 2):
            if wiki.kind == "wikidata":
                wiki.comments.append(_wikidata_comment(rng, users))
                continue
            pool: tuple[str, ...] = _COMMONS_SUMMARIES if wiki.kind == "commons" else _SUMMARIES
            text = _fill(rng, rng.choice(pool), lang, users)
            wiki.comments.append((text, _parse(text)))
        for _ in range(16):
            if wiki.kind == "wikidata":
                text = "/* wbeditentity-create-item:0| */"
                wiki.new_comments.append((text, _autocomment("Created a new Item", "")))
                continue
            pool = _COMMONS_SUMMARIES[:2] if wiki.kind == "commons" else _NEW_SUMMARIES
            text = _fill(rng, rng.choice(pool), lang, users)
            wiki.new_comments.append((text, _parse(text)))


# ------------------------------------------------------------- the generator


def _uuid4(bits: int) -> str:
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[bits & 3]}{h[17:20]}-{h[20:]}"


def _dt(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class _Builder:
    """Turns (user, wiki, type, time) into a recentchange dict."""

    __slots__ = ("dts", "offset", "rng", "world")

    def __init__(self, rng: random.Random, world: _World) -> None:
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
            "dt": dt, "domain": domain, "stream": _STREAM, "topic": _TOPIC, "partition": 0,
            "offset": self.offset,
        }

    def change(self, user: _User, wiki: _Wiki, kind: str, ts: int) -> dict[str, Any]:
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
                "$schema": _SCHEMA, "meta": self.meta(page.url, wiki.domain, ts),
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
                "$schema": _SCHEMA, "meta": self.meta(page.url, wiki.domain, ts),
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

    def _comment(self, wiki: _Wiki, page: _Page) -> tuple[str, str]:
        rng = self.rng
        if wiki.kind == "wikipedia" and rng.random() < 0.3:
            section = rng.choice(_SECTIONS)
            text = rng.choice(("", "", "add", "update", "ce", "fix link", "Added source"))
            comment = f"/* {section} */ {text}" if text else f"/* {section} */"
            anchor = section.replace(" ", "_")
            parsed = (f'<span dir="auto"><span class="autocomment"><a href="/wiki/{page.href}#'
                      f'{anchor}" title="{page.safe}">→\u200e{section}</a>'
                      f'{": " if text else ""}</span></span>{" " + text if text else ""}')
            return comment, parsed
        return wiki.comments[int(rng.random() * len(wiki.comments))]

    def _new_page(self, wiki: _Wiki) -> _Page:
        rng = self.rng
        length = int(rng.lognormvariate(7.5, 1.0)) + 20
        if wiki.kind == "wikidata":
            wiki.next_q += 1
            page = _Page(f"Q{wiki.next_q}", 0, wiki.wiki_base, length, 0)
        elif wiki.kind == "commons":
            title = f"File:{_title(rng, 'en')} {rng.randrange(1, 99999)}.jpg"
            page = _Page(title, 6, wiki.wiki_base, length, 0)
        else:
            page = _Page(_title(rng, wiki.lang), 0, wiki.wiki_base, length, 0)
        wiki.pages[int(rng.random() * len(wiki.pages))] = page
        return page

    def _log(self, user: _User, wiki: _Wiki, ts: int) -> tuple[dict[str, Any], str]:
        rng = self.rng
        log_type, action, template = rng.choice(_LOG_KINDS)
        page = wiki.pages[int(rng.random() * len(wiki.pages))]
        other = rng.choice(self.world.users).name
        params: dict[str, Any] | list[Any] = []
        comment = ""
        title, ns, url = page.title, page.ns, page.url
        if log_type == "newusers":
            title, ns, url = f"User:{user.name}", 2, wiki.wiki_base + _path(f"User:{user.name}")
            params = {"userid": rng.randrange(1, 50_000_000)}
        elif log_type == "patrol":
            params = {"curid": page.rev, "previd": page.rev - rng.randrange(1, 99), "auto": 0}
        elif log_type in ("delete", "block"):
            comment = rng.choice(("Spam", "[[WP:CSD#G11|G11]]: Unambiguous advertising",
                                  "[[WP:Vandalism|Vandalism]]", "Long-term abuse"))
        event = {
            "$schema": _SCHEMA, "meta": self.meta(url, wiki.domain, ts), "id": wiki.next_rc,
            "type": "log", "namespace": ns, "title": title, "title_url": url, "comment": comment,
            "timestamp": ts, "user": user.name, "bot": user.bot,
            "log_id": wiki.next_rc // 3 + 7, "log_type": log_type, "log_action": action,
            "log_params": params,
            "log_action_comment": template.format(rev=page.rev, title=title, user=user.name,
                                                  other=other, n=rng.randrange(1, 1300)),
        }
        return event, _parse(comment)

    def canary(self, ts: int) -> dict[str, Any]:
        return {
            "$schema": _SCHEMA, "meta": self.meta("https://canary", "canary", ts),
            "id": 0, "type": "edit", "namespace": 0, "title": "Canary", "comment": "canary event",
            "timestamp": ts, "bot": False, "server_url": "https://canary",
            "server_name": "canary", "server_script_path": "/w", "parsedcomment": "canary event",
        }


def synthetic_events(count: int, seed: int, start: int = 1_700_000_000) -> Iterator[SynthEvent]:
    """Yield `count` events, deterministic for (count, seed, start)."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if count == 0:
        return
    rng = random.Random(seed)
    rand, getrandbits, expovariate = rng.random, rng.getrandbits, rng.expovariate
    world = _World(rng)
    build = _Builder(rng, world)
    change, canary = build.change, build.canary
    wikis, bots, users = world.wikis, world.bots, world.users
    wiki_table, user_table = world.wiki_table, world.user_table
    n_wiki_table, n_user_table = len(wiki_table), len(user_table)
    wikidata = next(i for i, w in enumerate(wikis) if w.kind == "wikidata")
    commons = next(i for i, w in enumerate(wikis) if w.kind == "commons")
    dumps = orjson.dumps

    rate = rng.uniform(25.0, 50.0)
    t_bg = start + 1.5 + expovariate(rate)
    t_burst = burst_end = burst_gap = _INF
    burst_user = bots[0]
    burst_wiki = wikis[wikidata]
    next_burst: float = rng.randrange(400, 700)
    next_canary = start + rng.uniform(0.0, 3600.0)
    forced = dict(zip(rng.sample(range(20, 1000), 6), ("canary", *INVALID_KINDS), strict=True))
    late_due: float = rng.randrange(900, 1100)
    last_user, last_ts = users[0], start
    last_ms = 0
    for i in range(count):
        if i >= next_burst and t_burst == _INF:
            burst_user = bots[int(rand() * len(bots))]
            burst_wiki = wikis[wikidata if rand() < 0.8 else commons]
            burst_gap = 1.0 / rng.uniform(18.0, 60.0)
            t_burst = t_bg + burst_gap
            burst_end = t_bg + rng.uniform(3.0, 10.0)
            next_burst = _INF
        in_burst = t_burst < t_bg
        if in_burst:
            t = t_burst
            t_burst += burst_gap * (0.7 + 0.6 * rand())
            if t_burst > burst_end:
                t_burst = _INF
                next_burst = i + rng.randrange(5000, 15000)
            event_time = t - 0.05 - 0.25 * rand()
        else:
            t = t_bg
            t_bg += expovariate(rate)
            event_time = t - 0.05 - 1.45 * rand()
        ts = int(event_time)
        special = forced.get(i)
        if special is None and t >= next_canary:
            special = "canary"
            next_canary += 3600.0 + rng.uniform(-30.0, 30.0)
        if special is None and not in_burst:
            r = rand()
            if r < 0.001:
                special = INVALID_KINDS[int(rand() * len(INVALID_KINDS))]
            elif (r < 0.003 or i >= late_due) and last_ts - start >= 12:
                special = "late"
                late_due = _INF

        if special is None or special == "late":
            if in_burst:
                user, wiki, kind = burst_user, burst_wiki, "edit" if rand() < 0.95 else "new"
            else:
                user = users[user_table[int(rand() * n_user_table)]]
                if special == "late":
                    user, ts = last_user, max(start, last_ts - 11 - int(rand() * 80))
                home = user.home if rand() < 0.8 else wiki_table[int(rand() * n_wiki_table)]
                wiki, kind = wikis[home], _TYPE_TABLE[int(rand() * 100)]
            payload = dumps(change(user, wiki, kind, ts))
            if special is None:
                last_user, last_ts = user, ts
        elif special == "canary":
            payload = dumps(canary(ts))
        else:
            user = users[user_table[int(rand() * n_user_table)]]
            event = change(user, wikis[user.home], "edit", ts)
            if special == "not-json":
                whole = dumps(event)
                cut = int(rand() * (len(_NOT_JSON) + 2))
                payload = (_NOT_JSON[cut] if cut < len(_NOT_JSON)
                           else whole[: 1 + int(rand() * (len(whole) - 2))])
            else:
                if special == "no-user":
                    del event["user"]
                elif special == "timestamp-str":
                    event["timestamp"] = str(ts)
                elif special == "timestamp-float":
                    event["timestamp"] = round(event_time, 3)
                else:
                    event["user"] = getrandbits(24)
                payload = dumps(event)

        if rand() < 0.05:
            sse_id = f"{_ID_OFFSET}{build.offset}}}]"
        else:
            ms = int(t * 1000.0)
            if ms <= last_ms:
                ms = last_ms + 1
            last_ms = ms
            sse_id = f"{_ID_TS}{ms}}}]"
        # orjson's over-allocated result makes holding many of them ~8x slower; copy to fit.
        yield SynthEvent(bytes(memoryview(payload)), sse_id, round(t, 6))
