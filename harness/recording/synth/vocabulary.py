"""The words a synthetic stream is made of: per-language words and names, edit summaries,
Wikidata properties, log kinds, the wikis and their namespaces, what a line that is not
JSON looks like."""

from __future__ import annotations

from typing import Final

__all__ = ["BOT_PARTS", "COMMONS_SUMMARIES", "FIRST_NAMES", "HANDLE_PARTS", "LAST_NAMES",
           "LOG_KINDS", "NAMESPACES", "NEW_SUMMARIES", "NOT_JSON", "SECTIONS",
           "SUMMARIES", "TYPE_TABLE", "V6_PREFIXES", "WD_ACTIONS", "WD_LANGS",
           "WD_PROPS", "WIKIS", "WORDS"]


WORDS: Final[dict[str, tuple[str, ...]]] = {
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


FIRST_NAMES: Final[dict[str, tuple[str, ...]]] = {
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


LAST_NAMES: Final[dict[str, tuple[str, ...]]] = {
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


HANDLE_PARTS: Final = (
    "wiki", "Editor", "Gnome", "Histor", "Cat", "Fox", "Owl", "Star", "Moon", "River", "Pixel",
    "Quill", "Scribe", "Atlas", "Nord", "Blue", "Red", "Green", "Iron", "Silver", "Maple",
)


BOT_PARTS: Final = (
    "Succu", "Krd", "Delta", "Cewbot", "Cita", "Link", "Archive", "Quick", "Ref", "Cat", "Info",
    "Hay", "Moss", "Edo", "Matlin", "Pi", "Lsj", "Mr. Ibrahem ", "Data", "Commons", "Sig", "Tag",
)


SECTIONS: Final = (
    "Career", "Early life", "References", "External links", "History", "Personal life",
    "Biography", "Track listing", "Reception", "Episodes", "Cast", "Results", "Geography",
    "Demographics", "Awards and nominations", "Discography", "See also", "Production",
)


SUMMARIES: Final = (
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


NEW_SUMMARIES: Final = (
    "Created page with '{word} {word2} is a {word3}'",
    "[[WP:AES|←]]Created page with '{{{{Short description|{word} in {word2}}}}}'",
    "Redirect to [[{word} {word2}]]",
    "new article",
    "Created by translating the page \"[[:en:{word} {word2}|{word} {word2}]]\"",
)


WD_PROPS: Final = (
    ("P31", "instance of"), ("P279", "subclass of"), ("P17", "country"), ("P131", "located in"),
    ("P625", "coordinate location"), ("P569", "date of birth"), ("P106", "occupation"),
    ("P27", "country of citizenship"), ("P50", "author"), ("P577", "publication date"),
    ("P1476", "title"), ("P356", "DOI"), ("P698", "PubMed ID"), ("P2093", "author name string"),
    ("P1433", "published in"), ("P248", "stated in"), ("P813", "retrieved"), ("P21", "sex"),
)


WD_LANGS: Final = ("en", "de", "fr", "es", "it", "nl", "ru", "ja", "pt", "sv", "pl", "uk")


WD_ACTIONS: Final = (
    ("wbsetclaim-create:2||1", "Created claim"),
    ("wbcreateclaim-create:1|", "Created claim"),
    ("wbsetreference-add:2|", "Added reference to claim"),
    ("wbsetqualifier-add:1|", "Added qualifier"),
    ("wbremoveclaims-remove:1|", "Removed claim"),
    ("wbsetclaim-update:2||1", "Changed claim"),
)


COMMONS_SUMMARIES: Final = (
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


LOG_KINDS: Final = (
    ("newusers", "create", "New user account"),
    ("patrol", "patrol", "marked revision {rev} of [[{title}]] patrolled"),
    ("thanks", "thank", "{user} thanked {other}"),
    ("delete", "delete", "deleted page [[{title}]]"),
    ("abusefilter", "hit", "{user} triggered [[Special:AbuseFilter/{n}|filter {n}]], performing "
     "the action \"edit\" on [[{title}]]. Actions taken: Tag"),
    ("block", "block", "blocked [[User:{other}|{other}]] with an expiration time of 31 hours"),
)


# name, domain, weight, kind, language, has `patrolled`
WIKIS: Final = (
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


NAMESPACES: Final = (
    (0, ""), (0, ""), (0, ""), (0, ""), (0, ""), (0, ""), (0, ""), (0, ""), (1, "Talk:"),
    (2, "User:"), (3, "User talk:"), (4, "Wikipedia:"), (10, "Template:"), (118, "Draft:"),
)


TYPE_TABLE: Final = ("edit",) * 78 + ("categorize",) * 12 + ("log",) * 6 + ("new",) * 4


NOT_JSON: Final = (
    b'{"truncated": ', b"<html>503</html>",
    b"<html><body><h1>503 Service Unavailable</h1></body></html>",
    b"upstream connect error or disconnect/reset before headers",
)


V6_PREFIXES: Final = ("2601", "2600", "2A02", "2A01", "2001", "2405", "2409", "240E", "2804")
