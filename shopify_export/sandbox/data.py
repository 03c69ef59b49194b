"""Deterministic customers of the sandbox store, their ids and their cursors.

Customer ``index`` (0-based) depends only on ``seed``, ``index`` and ``id_start``. Ids grow
strictly with the index but leave gaps: customer i has an id in
``[id_start + i * ID_STRIDE, id_start + (i + 1) * ID_STRIDE)``, so an id or a cursor maps back
to an index in O(1).

Most customers look ordinary. Some are hostile on purpose: non-ASCII and right-to-left names,
emoji, quotes, commas, newlines, NUL and other control characters, text that spreadsheets treat
as a formula, 250 tags, 64 KB notes, and customers where every nullable field is null. Indexes
1 to 9 are one customer of each kind, and each kind comes back every 53 to 1999 indexes, so that
small stores contain all of them while the average customer stays near 1 KB of JSON.
"""

from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from shopify_export.sandbox.config import ID_STRIDE, SandboxConfig

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15

# Profiles of the showcase customers at the start of the store. Each one recurs at
# ``index % period == first index``; the periods are primes so that profiles rarely coincide.
NULL_EVERYTHING = 1
MANY_TAGS = 2
HUGE_NOTE = 3
FORMULAS = 4
CONTROL_CHARACTERS = 5
RIGHT_TO_LEFT = 6
CJK = 7
EMOJI = 8
QUOTES_AND_NEWLINES = 9
_PROFILE_PERIODS: dict[int, int] = {
    NULL_EVERYTHING: 499,
    MANY_TAGS: 1009,
    HUGE_NOTE: 1999,
    FORMULAS: 97,
    CONTROL_CHARACTERS: 89,
    RIGHT_TO_LEFT: 61,
    CJK: 53,
    EMOJI: 71,
    QUOTES_AND_NEWLINES: 59,
}

MAX_TAGS = 250
HUGE_NOTE_LENGTH = 64 * 1024

# Customer i is created at _CREATED_START + 300 * i seconds plus up to 299 seconds, so a million
# customers span ten years. _NOW is the fixed "today" of update times and lifetimes.
_CREATED_START = 1_451_606_400  # 2016-01-01T00:00:00Z
_NOW = 1_780_272_000  # 2026-06-01T00:00:00Z

# Name pools by culture: (first names, last names).
_NAMES: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    (
        ("Ada", "James", "Mary", "Robert", "Linda", "Michael", "Emily", "David", "Sarah", "Tom"),
        ("Lovelace", "Smith", "Johnson", "Brown", "Taylor", "Miller", "Wilson", "Moore"),
    ),
    (
        ("José", "Zoë", "Søren", "Łukasz", "François", "Begoña", "Jürgen", "Ævar", "Chloé"),
        ("García", "Müller", "Nguyễn", "Ødegård", "Wójcik", "Dvořák", "Ñúñez", "Lefèvre"),
    ),
    (
        ("O'Brien", "Anne-Marie", "D'Arcy", "Mary Ann", "J.", "Jean-Luc"),
        ("O'Connor", "Smith-Jones", "van der Berg", "de la Cruz", "McDonald", "St. John"),
    ),
    (("太郎", "花子", "伟", "秀英", "민준", "서연"), ("田中", "山本", "王", "李", "김", "박")),
    (("محمد", "فاطمة", "יוסף", "שרה", "Ахмед", "Ольга"), ("العلي", "حسن", "כהן", "לוי", "Иванов")),
]
# Indexes into _NAMES, drawn uniformly: half of the names are plain English ones.
_CULTURE_WEIGHTS = (0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 3, 4)

_HOSTILE_NAMES = (
    '=HYPERLINK("http://example.com/x","click")',
    "+1-555",
    "-5",
    "@SUM(A1)",
    "\tTabbed",
    "\rReturned",
    "Nul\x00Byte",
    "Line\nBreak",
    'Quote "Q" Smith',
    "Comma, Jr.",
    "🦄 Unicorn",
    "Zalgo Z̷a̸l̵g̶o",
    "   ",
    "",
)

_EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example", "shop.test")
_LOCALES = ("en", "en", "en", "en", "en", "fr", "de", "es", "ja", "ar", "he", "pt-BR", "zh-CN")
_EMAIL_STATES = (
    ("NOT_SUBSCRIBED", 55),
    ("SUBSCRIBED", 30),
    ("UNSUBSCRIBED", 10),
    ("PENDING", 3),
    ("INVALID", 2),
)
_SMS_STATES = (("NOT_SUBSCRIBED", 60), ("SUBSCRIBED", 25), ("UNSUBSCRIBED", 12), ("PENDING", 3))
_OPT_IN_LEVELS = ("SINGLE_OPT_IN", "SINGLE_OPT_IN", "CONFIRMED_OPT_IN", "UNKNOWN")
_CUSTOMER_STATES = (("DISABLED", 50), ("ENABLED", 40), ("INVITED", 8), ("DECLINED", 2))

_TAGS = (
    "vip",
    "wholesale",
    "newsletter",
    "returning",
    "b2b",
    "Black Friday 2025",
    "ça va",
    "優良顧客",
    "عميل",
    "tag, with comma",
    'say "hi"',
    "=1+1",
    "-10%",
    "@risk",
)
_NOTES = (
    "Prefers e-mail contact.",
    "Called about order #1001, resolved.",
    'Said "call me after 5pm", twice.',
    "Line one\nLine two\nLine three",
    "Wholesale account, net 30.",
    "Ça marche – très bien ✓",
    "注文はいつも午前中に届けてください。",
    "Returned item, refunded; see ticket 42.",
)
_COMPANIES = (
    "Acme Corp",
    "Initech",
    "Müller & Söhne GmbH",
    'Smith, Jones and "Partners"',
    "株式会社テスト",
    "@SUM(A1)",
    "=cmd|' /C calc'!A0",
    "-Minus Ltd",
    "+Plus Inc",
)
_STREETS = ("Main St", "High Street", "Rue de Rivoli", "Königstraße", "Calle Mayor", "Queen St W")

# (city, province, province code, country, country code, zip, phone prefix, time zone)
_PLACES: tuple[tuple[str, str | None, str | None, str, str, str | None, str, str], ...] = (
    ("Boston", "Massachusetts", "MA", "United States", "US", "02134", "+1617", "America/New_York"),
    ("Newark", "New Jersey", "NJ", "United States", "US", "07102", "+1973", "America/New_York"),
    (
        "San Francisco",
        "California",
        "CA",
        "United States",
        "US",
        "94103",
        "+1415",
        "America/Los_Angeles",
    ),
    ("New York", "New York", "NY", "United States", "US", "10001", "+1212", "America/New_York"),
    ("Ottawa", "Ontario", "ON", "Canada", "CA", "K1A 0B1", "+1613", "America/Toronto"),
    ("Montréal", "Quebec", "QC", "Canada", "CA", "H2X 1Y4", "+1514", "America/Toronto"),
    ("London", None, None, "United Kingdom", "GB", "SW1A 1AA", "+44207", "Europe/London"),
    ("Dublin", "Dublin", "D", "Ireland", "IE", None, "+3531", "Europe/Dublin"),
    ("Berlin", None, None, "Germany", "DE", "10115", "+4930", "Europe/Berlin"),
    ("Paris", None, None, "France", "FR", "75001", "+331", "Europe/Paris"),
    ("東京", "Tokyo", "JP-13", "Japan", "JP", "100-0001", "+813", "Asia/Tokyo"),
    ("São Paulo", "São Paulo", "SP", "Brazil", "BR", "01310-100", "+5511", "America/Sao_Paulo"),
    ("Sydney", "New South Wales", "NSW", "Australia", "AU", "2000", "+612", "Australia/Sydney"),
    ("תל אביב", None, None, "Israel", "IL", "6100000", "+9723", "Asia/Jerusalem"),
    ("دبي", "Dubai", "DU", "United Arab Emirates", "AE", None, "+9714", "Asia/Dubai"),
)


def _control_text() -> str:
    return "Ctrl\x00nul\x01soh\x07bel\x08bs\x1besc\x7fdel\u2028ls\ufeffbom\u200bzw\r\nEnd"


def _huge_note() -> str:
    line = 'Long note, "quoted", =SUM(A1), ünïcödé ✓ 日本語 🦄\n'
    text = line * (HUGE_NOTE_LENGTH // len(line) + 1)
    return text[:HUGE_NOTE_LENGTH]


_HUGE_NOTE_TEXT = _huge_note()
_MANY_TAGS = tuple(
    [f"tag-{n:03d}" for n in range(MAX_TAGS - 4)] + ["ünï", "日本", "=1+1", "tag, comma"]
)


def _mix64(value: int) -> int:
    """Return splitmix64's output for ``value``: a well-mixed 64-bit integer."""
    value = (value + _GOLDEN) & _MASK
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


class _Draws:
    """A stream of pseudo-random numbers for one customer.

    Each 64-bit splitmix64 word is spent in mixed radix, several draws per word, because one
    Python-level hash per draw would dominate the time to build a customer.
    """

    __slots__ = ("_state", "_word", "_room")

    def __init__(self, seed: int, index: int) -> None:
        self._state = _mix64(_mix64(seed & _MASK) ^ (index & _MASK))
        self._word = self._state
        self._room = _MASK

    def below(self, limit: int) -> int:
        """Return a number in ``0 .. limit - 1``."""
        if self._room < limit << 8:
            self._state = (self._state + _GOLDEN) & _MASK
            self._word = _mix64(self._state)
            self._room = _MASK
        value = self._word % limit
        self._word //= limit
        self._room //= limit
        return value

    def chance(self, per_thousand: int) -> bool:
        return self.below(1000) < per_thousand

    def pick(self, items: tuple[Any, ...] | list[Any]) -> Any:
        return items[self.below(len(items))]

    def weighted(self, items: tuple[tuple[str, int], ...]) -> str:
        point = self.below(100)
        for value, weight in items:
            if point < weight:
                return value
            point -= weight
        return items[-1][0]


def _customer_key(seed: int, index: int) -> int:
    """Return a 64-bit hash of one customer: its id jitter, templates and creation time."""
    return _mix64((seed * 0x2545F4914F6CDD1D) & _MASK ^ index)


def customer_id(config: SandboxConfig, index: int) -> int:
    """Return the numeric id of customer ``index``."""
    return config.id_start + index * ID_STRIDE + _customer_key(config.seed, index) % ID_STRIDE


def customer_ids(config: SandboxConfig) -> list[int]:
    """Return the numeric ids of every customer of the store, in order."""
    return [customer_id(config, index) for index in range(config.customers)]


def index_after(config: SandboxConfig, last_id: int) -> int:
    """Return the index of the first customer whose id is greater than ``last_id``.

    Returns ``config.customers`` when there is none.
    """
    if last_id < config.id_start:
        return 0
    index = (last_id - config.id_start) // ID_STRIDE
    if index >= config.customers:
        return config.customers
    return index + 1 if customer_id(config, index) <= last_id else index


def encode_cursor(numeric_id: int) -> str:
    """Return the opaque cursor of a customer, in the shape Shopify uses for ``sortKey: ID``."""
    payload = json.dumps(
        {"last_id": numeric_id, "last_value": str(numeric_id)}, separators=(",", ":")
    )
    return base64.b64encode(payload.encode()).decode()


def decode_cursor(cursor: str) -> int | None:
    """Return the customer id a cursor points at, or None when it is not a valid ID cursor."""
    try:
        raw = base64.b64decode(cursor.encode("ascii"), validate=True)
        payload = json.loads(raw)
    except (UnicodeError, binascii.Error, ValueError):
        return None
    if not isinstance(payload, dict):
        return None
    last_id = payload.get("last_id")
    if isinstance(last_id, bool) or not isinstance(last_id, int) or last_id < 0:
        return None
    last_value = payload.get("last_value", str(last_id))
    if str(last_value) != str(last_id):
        return None
    return last_id


_CLOCK = [f"{minute // 60:02d}:{minute % 60:02d}" for minute in range(1440)]
_SECONDS = [f"{second:02d}" for second in range(60)]


@lru_cache(maxsize=8192)
def _iso_date(day: int) -> str:
    t = time.gmtime(day * 86400)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"


def _iso(epoch: int) -> str:
    """Return ``epoch`` as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC)."""
    day, second = divmod(epoch, 86400)
    return f"{_iso_date(day)}T{_CLOCK[second // 60]}:{_SECONDS[second % 60]}Z"


@lru_cache(maxsize=8192)
def _lifetime(days: int) -> str:
    """Return Shopify's wording of how long a customer has existed, e.g. ``about 3 years``."""
    if days >= 730:
        return f"about {days // 365} years"
    if days >= 365:
        return "about 1 year"
    if days >= 60:
        return f"{days // 30} months"
    if days >= 2:
        return f"{days} days"
    return "1 day"


def _money(cents: int) -> str:
    if cents == 0:
        return "0.0"
    return f"{cents // 100}.{cents % 100:02d}"


def _profile(index: int) -> int:
    """Return the showcase profile of ``index``, or 0 for an ordinary customer."""
    for profile, period in _PROFILE_PERIODS.items():
        if index % period == profile:
            return profile
    return 0


@dataclass(frozen=True, slots=True)
class _Traits:
    """The random choices that make up one person, apart from ids and times.

    ``base`` contains the customer fields that depend on nothing else. Customers built from the
    same traits share its values, which are never modified.
    """

    first: str | None
    last: str | None
    email_local: str | None
    email_domain: str
    phone_prefix: str | None
    email_state: str
    email_level: str
    email_delay: int
    verified: bool
    sms_state: str
    sms_level: str
    sms_delay: int
    update_delay: int
    base: dict[str, Any]


def _names(draws: _Draws) -> tuple[str | None, str | None]:
    firsts, lasts = _NAMES[draws.pick(_CULTURE_WEIGHTS)]
    first: str | None = draws.pick(firsts)
    last: str | None = draws.pick(lasts)
    if draws.chance(5):
        first = draws.pick(_HOSTILE_NAMES)
    if draws.chance(30):
        first = None
    if draws.chance(40):
        last = None
    return first, last


def _email_local(draws: _Draws, first: str | None) -> str:
    local = first.lower() if first and first.isascii() and first.isalpha() else "customer"
    if draws.chance(200):
        local = local.upper()
    if draws.chance(300):
        local += "+shop"
    return local


def _traits(draws: _Draws) -> _Traits:
    """Draw the traits of one ordinary person."""
    first, last = _names(draws)
    email_local = None if draws.chance(80) else _email_local(draws, first)
    phone_prefix = draws.pick(_PLACES)[6] if draws.chance(450) else None
    orders = draws.below(4) if draws.chance(600) else draws.below(40) * draws.below(13)
    tags: list[str] = []
    for _ in range(draws.below(6) if draws.chance(600) else 0):
        tag = draws.pick(_TAGS)
        if tag not in tags:
            tags.append(tag)
    note = draws.pick(_NOTES) if draws.chance(250) else None
    base = {
        "firstName": first,
        "lastName": last,
        "state": draws.weighted(_CUSTOMER_STATES),
        "tags": tags,
        "note": note,
        "taxExempt": draws.chance(30),
        "locale": draws.pick(_LOCALES),
        "numberOfOrders": str(orders),
        "amountSpent": {
            "amount": _money(orders * (draws.below(20000) + 500)),
            "currencyCode": "USD",
        },
        "canDelete": orders == 0,
        "dataSaleOptOut": draws.chance(20),
        "multipassIdentifier": None,
        "productSubscriberStatus": "NEVER_SUBSCRIBED",
    }
    return _Traits(
        first=first,
        last=last,
        email_local=email_local,
        email_domain=draws.pick(_EMAIL_DOMAINS),
        phone_prefix=phone_prefix,
        email_state=draws.weighted(_EMAIL_STATES),
        email_level=draws.pick(_OPT_IN_LEVELS),
        email_delay=draws.below(86400),
        verified=draws.chance(700),
        sms_state=draws.weighted(_SMS_STATES),
        sms_level=draws.pick(_OPT_IN_LEVELS),
        sms_delay=draws.below(86400),
        update_delay=draws.below(2 * 365 * 86400),
        base=base,
    )


def _place(draws: _Draws) -> dict[str, Any] | None:
    """Draw a default address without its id and names, or None for a customer without one."""
    if draws.chance(150):
        return None
    city, province, province_code, country, country_code, zip_code, prefix, zone = draws.pick(
        _PLACES
    )
    company = draws.pick(_COMPANIES) if draws.chance(300) else None
    address1 = f"{draws.below(9999) + 1} {draws.pick(_STREETS)}"
    address2 = f"Apt {draws.below(900) + 1}" if draws.chance(300) else None
    phone = f"{prefix}555{draws.below(10000):04d}" if draws.chance(400) else None
    return {
        "id": None,
        "firstName": None,
        "lastName": None,
        "name": None,
        "company": company,
        "address1": address1,
        "address2": address2,
        "city": city,
        "province": province,
        "provinceCode": province_code,
        "country": country,
        "countryCode": country_code,
        "countryCodeV2": country_code,
        "zip": zip_code,
        "phone": phone,
        "formattedArea": ", ".join(part for part in (city, province, country) if part),
        "latitude": None,
        "longitude": None,
        "timeZone": zone,
        "coordinatesValidated": False,
    }


# Ordinary customers combine one of TEMPLATES drawn persons with one of TEMPLATES drawn
# places (16.7 million combinations), because drawing every trait anew per customer would
# make the sandbox slower than the exporter it serves.
TEMPLATES = 4096


@lru_cache(maxsize=4)
def _templates(seed: int) -> tuple[list[_Traits], list[dict[str, Any] | None]]:
    """Return the persons and places of ``seed``, drawn on first use (in well under a second)."""
    people = [_traits(_Draws(seed ^ 0x5EED_7A17, number)) for number in range(TEMPLATES)]
    places = [_place(_Draws(seed ^ 0x5EED_9A5E, number)) for number in range(TEMPLATES)]
    return people, places


def prepare(config: SandboxConfig) -> None:
    """Draw the templates of the store's seed ahead of the first customer."""
    _templates(config.seed)


# Names of the hostile profiles; customer ``index`` takes entry ``index // period % len``.
_PROFILE_NAMES: dict[int, tuple[tuple[str | None, str | None], ...]] = {
    RIGHT_TO_LEFT: (("محمد", "العلي"), ("שרה", "כהן"), ("فاطمة", "حسن"), ("יוסף", "לוי")),
    CJK: (("太郎", "田中"), ("花子", "山本"), ("伟", "王"), ("민준", "김")),
    EMOJI: (
        ("🦄 Unicorn", "Emoji 🎉"),
        ("Ana 🌸", None),
        ("👩‍👩‍👧‍👦", "Family"),
        ("🇨🇦 Maple", "Leaf"),
    ),
    FORMULAS: (('=HYPERLINK("http://example.com/x","click")', "+1-555"), ("@SUM(A1)", "-5")),
    CONTROL_CHARACTERS: (("Nul\x00Byte\x1b", "\tTab\rReturn\nNewline"),),
    QUOTES_AND_NEWLINES: (('Anne "Annie"', "Smith, Jr.\nThe Second"), ("O'Brien", 'Say "Hi"')),
}
# Customer fields of the hostile profiles, laid over the drawn ones.
_PROFILE_FIELDS: dict[int, dict[str, Any]] = {
    MANY_TAGS: {"tags": list(_MANY_TAGS)},
    HUGE_NOTE: {"note": _HUGE_NOTE_TEXT},
    FORMULAS: {"note": "-5", "tags": ["=1+1", "+SUM(A1)", "@risk", "-10%"]},
    CONTROL_CHARACTERS: {"note": _control_text(), "tags": ["tab\there", "nul\x00tag"]},
    QUOTES_AND_NEWLINES: {
        "note": 'He said "hello, world"\r\nand left, quickly.\n',
        "tags": ['say "hi"', "tag, with comma"],
    },
    RIGHT_TO_LEFT: {"note": "ملاحظة: العميل يفضل البريد"},
    CJK: {"note": "備考: 午前中に配達 ✓"},
    EMOJI: {"note": "Loves 🦄 and ✨, hates 🐛"},
}
# Default address fields of the hostile profiles.
_PROFILE_ADDRESS: dict[int, dict[str, Any]] = {
    FORMULAS: {"company": "=cmd|' /C calc'!A0", "address2": "-5", "zip": "+1-555"},
    CONTROL_CHARACTERS: {"company": _control_text(), "address2": "\x00\x07"},
    QUOTES_AND_NEWLINES: {
        "company": 'Smith, Jones and "Partners"',
        "address2": "Building 2,\nFloor 3",
    },
}


def _hostile(
    person: _Traits, place: dict[str, Any] | None, profile: int, index: int, seed: int
) -> tuple[_Traits, dict[str, Any] | None]:
    """Return ``person`` and ``place`` made hostile in the way ``profile`` names."""
    base = {**person.base, **_PROFILE_FIELDS.get(profile, {})}
    first, last = person.first, person.last
    names = _PROFILE_NAMES.get(profile)
    if names:
        first, last = names[index // _PROFILE_PERIODS[profile] % len(names)]
        base["firstName"] = first
        base["lastName"] = last
    if profile in _PROFILE_ADDRESS:
        number = index
        while place is None:
            number += 1
            place = _templates(seed)[1][number % TEMPLATES]
        place = {**place, **_PROFILE_ADDRESS[profile]}
    return dataclasses.replace(person, first=first, last=last, base=base), place


def _null_everything(numeric_id: int, created: int) -> dict[str, Any]:
    """Return a customer whose every nullable field is null and whose lists are empty."""
    return {
        "id": f"gid://shopify/Customer/{numeric_id}",
        "legacyResourceId": str(numeric_id),
        "firstName": None,
        "lastName": None,
        "displayName": "",
        "email": None,
        "phone": None,
        "defaultEmailAddress": None,
        "defaultPhoneNumber": None,
        "emailMarketingConsent": None,
        "smsMarketingConsent": None,
        "validEmailAddress": False,
        "verifiedEmail": False,
        "state": "DISABLED",
        "tags": [],
        "note": None,
        "taxExempt": False,
        "locale": "en",
        "createdAt": _iso(created),
        "updatedAt": _iso(created),
        "numberOfOrders": "0",
        "amountSpent": {"amount": "0.0", "currencyCode": "USD"},
        "lifetimeDuration": _lifetime((_NOW - created) // 86400),
        "canDelete": True,
        "dataSaleOptOut": False,
        "multipassIdentifier": None,
        "productSubscriberStatus": "NEVER_SUBSCRIBED",
        "defaultAddress": None,
    }


def _assemble(
    numeric_id: int, index: int, created: int, person: _Traits, place: dict[str, Any] | None
) -> dict[str, Any]:
    """Build the customer object of one person with its own id, e-mail, phone and times.

    The result shares ``person.base`` values and must be treated as read-only.
    """
    first = person.first
    last = person.last
    result = person.base.copy()
    result["id"] = f"gid://shopify/Customer/{numeric_id}"
    result["legacyResourceId"] = str(numeric_id)

    email = None
    email_address = None
    email_consent = None
    if person.email_local is not None:
        email = f"{person.email_local}.{index}@{person.email_domain}"
        email_state = person.email_state
        changed = None
        if email_state != "NOT_SUBSCRIBED":
            changed = _iso(created + person.email_delay)
        email_address = {
            "emailAddress": email,
            "marketingState": email_state,
            "marketingOptInLevel": person.email_level,
            "marketingUpdatedAt": changed,
            "validFormat": email_state != "INVALID",
            "marketingUnsubscribeUrl": f"https://shop.test/unsubscribe?c={numeric_id}",
            "openTrackingLevel": "UNKNOWN",
        }
        email_consent = {
            "marketingState": email_state,
            "marketingOptInLevel": person.email_level,
            "consentUpdatedAt": changed,
        }
    result["email"] = email
    result["defaultEmailAddress"] = email_address
    result["emailMarketingConsent"] = email_consent
    result["validEmailAddress"] = email is not None and person.email_state != "INVALID"
    result["verifiedEmail"] = email is not None and person.verified

    phone = None
    phone_number = None
    sms_consent = None
    if person.phone_prefix is not None:
        phone = f"{person.phone_prefix}5{index % 1_000_000:06d}"
        sms_state = person.sms_state
        changed = source = None
        if sms_state != "NOT_SUBSCRIBED":
            changed = _iso(created + person.sms_delay)
            source = "SHOPIFY"
        phone_number = {
            "phoneNumber": phone,
            "marketingState": sms_state,
            "marketingOptInLevel": person.sms_level,
            "marketingUpdatedAt": changed,
            "marketingCollectedFrom": source,
        }
        sms_consent = {
            "marketingState": sms_state,
            "marketingOptInLevel": person.sms_level,
            "consentUpdatedAt": changed,
            "consentCollectedFrom": source,
        }
    result["phone"] = phone
    result["defaultPhoneNumber"] = phone_number
    result["smsMarketingConsent"] = sms_consent

    if first is None or last is None:
        full_name = first or last
    else:
        full_name = f"{first} {last}"
    result["displayName"] = full_name or email or phone or ""
    result["createdAt"] = _iso(created)
    result["updatedAt"] = _iso(min(_NOW - 1, created + person.update_delay))
    result["lifetimeDuration"] = _lifetime((_NOW - created) // 86400)

    address = None
    if place is not None:
        address = place.copy()
        address["id"] = f"gid://shopify/MailingAddress/{numeric_id + 17}?model_name=CustomerAddress"
        address["firstName"] = first
        address["lastName"] = last
        address["name"] = full_name
    result["defaultAddress"] = address
    return result


def _build(
    config: SandboxConfig,
    index: int,
    profile: int,
    templates: tuple[list[_Traits], list[dict[str, Any] | None]],
) -> dict[str, Any]:
    """Build customer ``index``; the result shares template values, so it is read-only."""
    key = _customer_key(config.seed, index)
    numeric_id = config.id_start + index * ID_STRIDE + key % ID_STRIDE
    created = _CREATED_START + index * 300 + (key >> 40) % 300
    if profile == NULL_EVERYTHING:
        return _null_everything(numeric_id, created)
    people, places = templates
    person = people[(key >> 10) % TEMPLATES]
    place = places[(key >> 24) % TEMPLATES]
    if profile:
        person, place = _hostile(person, place, profile, index, config.seed)
    return _assemble(numeric_id, index, created, person, place)


def customer(config: SandboxConfig, index: int) -> dict[str, Any]:
    """Return customer ``index`` with every field the sandbox serves, in the newest shape.

    Both the 2025-04+ fields (``defaultEmailAddress``, ``defaultPhoneNumber``) and the older
    ones (``email``, ``phone``, ``emailMarketingConsent``, ``smsMarketingConsent``) are set.
    The result is a private copy that the caller may change.

    Raises:
        IndexError: when ``index`` is outside ``0 .. config.customers - 1``.
    """
    if not 0 <= index < config.customers:
        raise IndexError(f"Customer index {index} is outside 0..{config.customers - 1}")
    return copy.deepcopy(_build(config, index, _profile(index), _templates(config.seed)))


def iter_customers(
    config: SandboxConfig, start: int, stop: int, reverse: bool = False
) -> Iterator[dict[str, Any]]:
    """Yield customers ``start .. stop - 1`` in index order (or reversed), as read-only dicts.

    They share values with the templates that customers are drawn from, so callers must not
    change them (``customer`` returns a copy that may be changed). Handling each customer as
    it is yielded is faster than building the whole page first, because its dicts are still in
    the CPU cache.
    """
    start = max(start, 0)
    stop = min(stop, config.customers)
    hostile: dict[int, int] = {}
    for profile, period in _PROFILE_PERIODS.items():
        first = start + (profile - start) % period
        for index in range(first, stop, period):
            hostile.setdefault(index, profile)
    templates = _templates(config.seed)
    indexes = range(stop - 1, start - 1, -1) if reverse else range(start, stop)
    for index in indexes:
        yield _build(config, index, hostile.get(index, 0), templates)
