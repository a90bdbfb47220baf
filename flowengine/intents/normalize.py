"""Shopper text, normalised so that spelling variants meet: the first step of intent matching.

"Chci VRÁTIT boty!!", "chci vratit boty" and "chci  vrátit   boty" are the same request; so are
"order 1003" and "order 42". Normalising once, the same way for examples and for shoppers' text,
is what lets a few examples per intent cover the ways people type.
"""

from __future__ import annotations

import re
import unicodedata

# What stands in for a masked span. Private-use characters: no shopper types them, they survive
# every later step (they are neither marks nor spaces) and each makes n-grams of its own.
DIGITS_MASK = "\ue000"
EMAIL_MASK = "\ue001"

_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
_DIGITS = re.compile(r"\d+")  # any script's digits: "1003" and Thai "๑๐๐๓" alike
_SPACES = re.compile(r"\s+")
# "pleaseeee", "helppp": three or more of one letter are typed for emphasis, not spelling.
_REPEATS = re.compile(r"(\w)\1{2,}")


def _is_latin(char: str) -> bool:
    return unicodedata.name(char, "").startswith("LATIN")


def _strip_latin_diacritics(text: str) -> str:
    """Drop accents from Latin letters only: "vrátit" -> "vratit", "ș" -> "s".

    Thai vowels and tone marks are combining marks too, but they are the word itself
    ("ขาย" sell, "ข่าย" net), so a mark is dropped only when it sits on a Latin letter.
    """
    kept: list[str] = []
    on_latin = False
    for char in unicodedata.normalize("NFD", text):
        if unicodedata.combining(char):
            if not on_latin:
                kept.append(char)
            continue
        on_latin = _is_latin(char)
        kept.append(char)
    return unicodedata.normalize("NFC", "".join(kept))


def _keep(char: str) -> str:
    """Letters, digits, marks and masks stay; punctuation, symbols, emoji, controls: a space."""
    if char in (DIGITS_MASK, EMAIL_MASK):
        return char
    category = unicodedata.category(char)
    if category[0] in "LNM":
        return char
    return " "


def normalize(text: str) -> str:
    """NFKC, casefold, emails and digit runs masked, Latin diacritics stripped, punctuation and
    symbols dropped, repeated letters and spaces collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _EMAIL.sub(f" {EMAIL_MASK} ", text)
    text = _DIGITS.sub(f" {DIGITS_MASK} ", text)
    text = _strip_latin_diacritics(text)
    text = "".join(_keep(char) for char in text)
    text = _REPEATS.sub(r"\1\1", text)
    return _SPACES.sub(" ", text).strip()


def has_words(normalized: str) -> bool:
    """Whether a normalised text has any letter: masks, digits and marks alone ask for nothing."""
    return any(char.isalpha() for char in normalized)


MAX_KEPT_CHARS = 120  # of an unmatched text a merchant keeps (`intents.keep_unmatched`)


def masked(text: str) -> str:
    """An unmatched text as a merchant may keep it to improve intents: what the shopper typed,
    with every email `[email]` and every run of digits `[number]` (order numbers, phones,
    postcodes, card digits), controls and line breaks as spaces, at most MAX_KEPT_CHARS."""
    text = unicodedata.normalize("NFKC", text)
    text = _EMAIL.sub("[email]", text)
    text = _DIGITS.sub("[number]", text)
    text = "".join(" " if unicodedata.category(c)[0] in "CZ" else c for c in text)
    text = _SPACES.sub(" ", text).strip()
    return text if len(text) <= MAX_KEPT_CHARS else text[: MAX_KEPT_CHARS - 1] + "…"
