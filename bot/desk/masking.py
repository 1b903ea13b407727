"""Contact details out of relayed messages, both ways: phone numbers, @handles, links, emails.

Anonymous peer services hide these because either side sharing them ends the anonymity the
person came for, and can put a volunteer at risk too. Published helpline numbers (the referral
directory) stay: a volunteer must be able to give a person a crisis line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers

from flows.resources import directory

# Regions tried for numbers written without +: the directory's countries, so a local
# number is recognised in the places Kindred serves.
FALLBACK_REGIONS = ("US", "GB", "IE", "CA", "AU", "NZ", "DE", "FR", "ES", "MX", "AR", "RU")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)
PROFILE_LINK = re.compile(
    r"(?:\b(?:https?://)?(?:www\.)?"
    r"(?:t\.me|telegram\.(?:me|dog)|wa\.me|signal\.me|discord\.gg|discord\.com/users|"
    r"instagram\.com|facebook\.com|fb\.me|m\.me|snapchat\.com|tiktok\.com|x\.com|twitter\.com|"
    r"vk\.com|linkedin\.com/in)"
    r"/\S*)|\btg://\S+",
    re.IGNORECASE,
)
HANDLE = re.compile(r"(?<![\w@/.])@[A-Za-z][A-Za-z0-9_]{3,31}\b")
INTERNATIONAL = re.compile(r"(?<![\w+])(?:\+|00)\d[\d\s().\-/]{5,}\d")
# Long digit runs with phone-like separators: 9 or more digits (a date has 8).
DIGIT_RUN = re.compile(r"(?<![\w])\d[\d\s().\-/]{7,}\d(?![\w])")
MIN_RUN_DIGITS = 9

PLACEHOLDERS = {
    "email": "[email hidden]",
    "link": "[link hidden]",
    "handle": "[username hidden]",
    "phone": "[number hidden]",
}


@dataclass(frozen=True)
class Masked:
    """A text with contact details replaced, and whether anything was replaced."""

    text: str
    changed: bool


def _digits(value: str) -> str:
    """Only the digits of a string."""
    return "".join(ch for ch in value if ch.isdigit())


@lru_cache(maxsize=1)
def published_numbers() -> frozenset[str]:
    """Digits of every phone number in the referral directory (these are never hidden)."""
    return frozenset(_digits(entry.phone) for entry in directory().all_entries() if entry.phone) - {
        ""
    }


def _is_published(raw: str) -> bool:
    """A directory number, as written there or with a country code in front ("+44 116 123")."""
    digits = _digits(raw)
    for number in published_numbers():
        for candidate in {number, number.lstrip("0")} - {""}:
            if digits == candidate:
                return True
            prefix = digits[: len(digits) - len(candidate)].removeprefix("00")
            if (
                digits.endswith(candidate)
                and 1 <= len(prefix) <= 3
                and phonenumbers.region_code_for_country_code(int(prefix)) != "ZZ"
            ):
                return True
    return False


def _phone_spans(text: str, regions: tuple[str, ...]) -> list[tuple[int, int]]:
    """Where phone numbers are: valid in a likely region, international, or long digit runs."""
    spans: list[tuple[int, int]] = []
    for region in regions:
        for match in phonenumbers.PhoneNumberMatcher(text, region, phonenumbers.Leniency.VALID):
            spans.append((match.start, match.end))
    for pattern in (INTERNATIONAL, DIGIT_RUN):
        for found in pattern.finditer(text):
            if pattern is DIGIT_RUN and len(_digits(found.group())) < MIN_RUN_DIGITS:
                continue
            spans.append((found.start(), found.end()))
    return [(s, e) for s, e in spans if not _is_published(text[s:e])]


def _replace_spans(text: str, spans: list[tuple[int, int]], placeholder: str) -> str:
    """Replace possibly overlapping spans, merged, from the end so offsets stay valid."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    for start, end in reversed(merged):
        text = text[:start] + placeholder + text[end:]
    return text


def mask_contacts(text: str, region: str | None = None) -> Masked:
    """Replace contact details with a placeholder; `region` (ISO code) helps read local numbers."""
    if not text:
        return Masked(text, False)
    masked = EMAIL.sub(PLACEHOLDERS["email"], text)
    masked = PROFILE_LINK.sub(PLACEHOLDERS["link"], masked)
    masked = HANDLE.sub(PLACEHOLDERS["handle"], masked)
    regions = ((region,) if region else ()) + tuple(r for r in FALLBACK_REGIONS if r != region)
    masked = _replace_spans(masked, _phone_spans(masked, regions), PLACEHOLDERS["phone"])
    return Masked(masked, masked != text)


# Message entities that carry contact details a plain-text check cannot see: a link hidden
# behind words, or a mention of an account that has no username (it holds the user's id).
HIDDEN_CONTACT_ENTITIES = frozenset({"text_mention"})


def hidden_contact(entities: list[tuple[str, str | None]]) -> bool:
    """Whether (type, url) entities hide contact details (a mention by id, a profile link)."""
    for kind, url in entities:
        if kind in HIDDEN_CONTACT_ENTITIES:
            return True
        if kind == "text_link" and url and mask_contacts(url).changed:
            return True
    return False
