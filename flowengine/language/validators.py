"""Built-in validators for `ask` steps: text in, a normalised value out (or None when invalid).

Each validator also names the input kind the widget should offer (an email keyboard, digits...).
Author regexes are checked at load time for nested quantifiers, and shopper text is cut to
MAX_ANSWER characters before any regex sees it, so a pattern cannot be made to backtrack for
seconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

MAX_ANSWER = 500

_EMAIL = re.compile(r"^[^@\s<>\"]{1,64}@[^@\s<>\"]{1,189}\.[^@\s<>\".]{2,63}$")
_ORDER = re.compile(r"^[A-Z0-9][A-Z0-9-]{1,23}$")
_DATE_FORMATS = (
    re.compile(r"^(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})$"),
    re.compile(r"^(?P<d>\d{1,2})[./](?P<m>\d{1,2})[./](?P<y>\d{4})$"),
)


@dataclass(frozen=True, slots=True)
class Validator:
    name: str
    input_kind: str  # what the widget's text box should be: text, email, tel, number, date
    check: Callable[[str], Any]


def _email(text: str) -> str | None:
    text = text.strip()
    if not _EMAIL.match(text):
        return None
    local, _, domain = text.rpartition("@")
    return f"{local}@{domain.lower()}"


def _order_number(text: str) -> str | None:
    text = re.sub(r"\s+", "", text.strip()).lstrip("#").upper()
    if not _ORDER.match(text) or not any(c.isdigit() for c in text):
        return None
    return text


def _phone(text: str) -> str | None:
    cleaned = re.sub(r"[\s().-]", "", text.strip())
    if not re.fullmatch(r"\+?\d{7,15}", cleaned):
        return None
    return cleaned


def _number(text: str) -> int | float | None:
    cleaned = text.strip().replace(" ", "").replace("\u00a0", "")
    if re.fullmatch(r"-?\d+", cleaned):
        return int(cleaned)
    if re.fullmatch(r"-?\d+[.,]\d+", cleaned):
        return float(cleaned.replace(",", "."))
    return None


def _date(text: str) -> str | None:
    for pattern in _DATE_FORMATS:
        m = pattern.match(text.strip())
        if m:
            try:
                return date(int(m["y"]), int(m["m"]), int(m["d"])).isoformat()
            except ValueError:
                return None
    return None


def _text(text: str) -> str | None:
    text = text.strip()
    return text or None


BUILTIN: dict[str, Validator] = {
    v.name: v
    for v in (
        Validator("email", "email", _email),
        Validator("order_number", "text", _order_number),
        Validator("phone", "tel", _phone),
        Validator("number", "number", _number),
        Validator("date", "date", _date),
        Validator("text", "text", _text),
    )
}
# `one_of` is not a function of the text alone: it checks against the step's choices.
NAMES = (*BUILTIN, "one_of")


def regex_validator(pattern: str) -> Validator:
    compiled = re.compile(pattern)

    def check(text: str) -> str | None:
        text = text.strip()
        return text if compiled.fullmatch(text) else None

    return Validator("regex", "text", check)


def number_validator(minimum: float | None, maximum: float | None) -> Validator:
    def check(text: str) -> int | float | None:
        value = _number(text)
        if value is None:
            return None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            return None
        return value

    return Validator("number", "number", check)


_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)[+*{]")


def regex_problem(pattern: str) -> str | None:
    """Why an author's regex is refused, or None when it is fine."""
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"invalid regular expression: {exc}"
    if _NESTED_QUANTIFIER.search(pattern):
        return "a repeated group that itself repeats (like '(a+)+') can take exponential time"
    return None
