"""Built-in validators for `ask` steps: text in, a normalised value out (or None when invalid).

Each validator also names the input kind the widget should offer (an email keyboard, digits...).
An author's `{regex: ...}` runs on RE2 (google-re2), whose time is linear in the length of the
text whatever the pattern, so no answer can make it backtrack; what RE2 cannot run
(backreferences, lookaround) is refused at load time, as is a repeated group that itself repeats.
Shopper text is also cut to MAX_ANSWER characters before any validator sees it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import re2  # type: ignore[import-untyped]  # google-re2 ships no type information

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
    """The validator for `{regex: pattern}`; the pattern must have passed `regex_problem`."""
    compiled = _re2(pattern)

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


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is a diagnostic, not a line on stderr


def _re2(pattern: str) -> Any:
    return re2.compile(_unicode(pattern), options=_RE2_OPTIONS)


# RE2's \w, \d and \s are ASCII; a Python author (and a Czech or Thai answer) means any
# script. Each becomes its Unicode class, inside a character class or outside one; \w also
# takes combining marks, without which no Thai word matches `\w+`. (\b stays ASCII.)
_WORD = r"\p{L}\p{M}\p{N}_"
_SPACE = r"\s\p{Z}"
_UNICODE: dict[str, tuple[str | None, str]] = {  # escape -> (inside a class, outside one)
    "w": (_WORD, f"[{_WORD}]"),
    "W": (None, f"[^{_WORD}]"),
    "d": (r"\p{Nd}", r"\p{Nd}"),
    "D": (None, r"\P{Nd}"),
    "s": (_SPACE, f"[{_SPACE}]"),
    "S": (None, f"[^{_SPACE}]"),
}


def _unicode(pattern: str) -> str:
    r"""`pattern` with \w, \d, \s (and their negations outside classes) made Unicode."""
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            inside, outside = _UNICODE.get(pattern[i + 1], (None, None))
            swap = inside if in_class else outside
            out.append(swap if swap is not None else pattern[i : i + 2])
            i += 2
            continue
        if in_class and pattern.startswith("[:", i):  # a POSIX class such as [:alpha:]
            end = pattern.find(":]", i + 2)
            end = len(pattern) if end < 0 else end + 2
            out.append(pattern[i:end])
            i = end
            continue
        out.append(c)
        i += 1
        if c == "[" and not in_class:
            in_class = True
            for opener in ("^", "]"):  # `[^`, and a `]` first in a class, are not its end
                if pattern.startswith(opener, i):
                    out.append(opener)
                    i += 1
        elif c == "]" and in_class:
            in_class = False
    return "".join(out)


def regex_problem(pattern: str) -> str | None:
    """Why an author's regex is refused, or None when it is fine."""
    try:
        _re2(pattern)
    except re2.error as exc:
        try:
            re.compile(pattern)  # Python's messages say more about plain mistakes
        except re.error as mistake:
            return f"invalid regular expression: {mistake}"
        said = exc.args[0] if exc.args else exc
        reason = said.decode(errors="replace") if isinstance(said, bytes) else said
        return (
            f"RE2 cannot run this regex ({reason}): answers are matched by a linear-time "
            "engine, so backreferences, lookaround, atomic groups and possessive quantifiers "
            "are not available"
        )
    if _nested_repeat(pattern):
        return (
            "a repeated group that itself repeats (like '(a+)+') backtracks exponentially "
            "in most regex engines; write it without the nesting"
        )
    return None


_BRACES = re.compile(r"\{(\d*)(,?)(\d*)\}")


def _nested_repeat(pattern: str) -> bool:
    """Whether a group that repeats holds something of varying length: `(a+)+`, `((\\w)+)+`.

    RE2 runs these in linear time too; they are refused because they say one thing many ways
    and hang any backtracking engine the pattern is copied into.
    """
    varies = [False]  # the top level and each open group: whether a part of it varies in length
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "(":
            varies.append(False)
            i += 1
            continue
        group = False  # whether the atom just read is a group with a varying part
        if c == ")" and len(varies) > 1:
            group = varies.pop()
            i += 1
        elif c == "[":
            i = _class_end(pattern, i)
        else:
            i += 2 if c == "\\" else 1
        length, low, high = _quantifier(pattern, i)
        many = high is None or high > 1
        if group and length and many:
            return True
        varies[-1] = varies[-1] or group or (length > 0 and (high is None or high > low))
        i += length
    return False


def _quantifier(pattern: str, i: int) -> tuple[int, int, int | None]:
    """The quantifier at `i` as (its length, least, most repeats; None: no limit), or (0, 1, 1)."""
    if pattern.startswith("+", i):
        return 1, 1, None
    if pattern.startswith("*", i):
        return 1, 0, None
    m = _BRACES.match(pattern, i)
    if m is None or not (m[1] or m[3]):
        return 0, 1, 1
    low = int(m[1] or 0)
    high = int(m[3]) if m[3] else (None if m[2] else low)
    return m.end() - i, low, high


def _class_end(pattern: str, i: int) -> int:
    """The index after the character class `[...]` that starts at `i`."""
    i += 1
    if i < len(pattern) and pattern[i] == "^":
        i += 1
    if i < len(pattern) and pattern[i] == "]":
        i += 1
    while i < len(pattern) and pattern[i] != "]":
        i += 2 if pattern[i] == "\\" else 1
    return i + 1
