"""Money, numbers, dates and plural forms as a native reader of a locale writes them.

CLDR data through Babel, never hand-written tables: `25,00 €` in Czech, `€25.00` in English,
`฿25.00` in Thai; `31. března 2026`; Czech `1 položka`, `2 položky`, `5 položek`. Each function
takes the locales to try, best first (the locale of the text being rendered, then its fallbacks),
and uses the first one CLDR knows. A value that is not what the function formats (a missing total,
a date that does not parse) comes back as itself: a message with an odd value still reads, where a
raised error would blank the whole text.

Dates are ISO strings (`2026-03-31`, or a datetime whose date part is that) in and out, so state
stays JSON; `today` is the date of the engine's clock (`now`), in UTC.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.numbers import UnknownCurrencyError, format_currency, format_decimal

DATE_FORMATS = ("short", "medium", "long", "full")
PLURAL_CATEGORIES = ("zero", "one", "two", "few", "many", "other")
MAX_DAYS = 36_600  # `add_days` moves at most about a hundred years
_NBSP = "\u00a0"


@lru_cache(maxsize=256)
def _known(locale: str) -> Locale | None:
    try:
        return Locale.parse(locale.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return None


def cldr_locale(locales: Sequence[str]) -> Locale:
    """The first of `locales` CLDR has data for; English when none is."""
    for loc in locales:
        found = _known(loc) if loc and loc != "*" else None
        if found is not None:
            return found
    english = _known("en")
    assert english is not None
    return english


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal | str):
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def money(value: Any, currency: Any, locales: Sequence[str], *, cents: bool = True) -> Any:
    """`25` with `EUR` -> `€25.00` (en), `25,00 €` (cs); without `cents`, a whole amount is
    written without them (`€60`, `60 €`). An unknown currency code is written after the number;
    a value that is not a number comes back unchanged."""
    number = _decimal(value)
    if number is None:
        return value
    locale = cldr_locale(locales)
    whole = not cents and number == number.to_integral_value()
    code = str(currency or "").strip().upper()
    if not code:
        return format_decimal(number, format="#,##0" if whole else None, locale=locale)
    pattern = None
    if whole:  # the locale's own currency pattern, without its fraction digits
        pattern = re.sub(r"\.0+", "", locale.currency_formats["standard"].pattern)
    try:
        return format_currency(
            number, code, format=pattern, locale=locale, currency_digits=pattern is None
        )
    except UnknownCurrencyError:
        return f"{format_decimal(number, locale=locale)}{_NBSP}{code}"


def number(value: Any, decimals: int | None, locales: Sequence[str]) -> Any:
    """`1234.5` -> `1,234.5` (en), `1 234,5` (cs); with `decimals`, exactly that many digits."""
    n = _decimal(value)
    if n is None:
        return value
    locale = cldr_locale(locales)
    if decimals is None:
        return format_decimal(n, locale=locale)
    pattern = "#,##0" + ("." + "0" * decimals if decimals else "")
    return format_decimal(n, format=pattern, locale=locale, decimal_quantization=True)


def parse_date(value: Any) -> date | None:
    """An ISO date, or the date part of an ISO datetime; None for anything else."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def format_day(value: Any, form: str, locales: Sequence[str]) -> Any:
    """`2026-03-31` -> `Mar 31, 2026` (en, medium), `31. března 2026` (cs, long). Spaces are
    no-break spaces, so a date never wraps across two lines."""
    day = parse_date(value)
    if day is None:
        return value
    text = format_date(day, format=form, locale=cldr_locale(locales))
    return text.replace(" ", _NBSP)


def plural_category(value: Any, locales: Sequence[str]) -> str:
    """The CLDR plural category of a count: cs 1 -> one, 3 -> few, 1.5 -> many, 5 -> other."""
    n = _decimal(value)
    if n is None:
        return "other"
    category: str = cldr_locale(locales).plural_form(abs(n))
    return category


def plural(value: Any, forms: dict[str, Any], locales: Sequence[str]) -> Any:
    """The form for the count's category, or `other` when the text does not give that one."""
    category = plural_category(value, locales)
    return forms.get(category, forms.get("other", ""))


def today_of(now: float) -> str:
    """The ISO date of the engine's clock (UTC)."""
    return _iso_day(int(now // 86400))


@lru_cache(maxsize=16)
def _iso_day(day: int) -> str:  # every engine step asks: one date a day, not one per step
    return datetime.fromtimestamp(day * 86400, UTC).date().isoformat()


def days_between(start: Any, end: Any) -> int | None:
    """Whole days from `start` to `end` (ISO dates); None when either is not a date."""
    a, b = parse_date(start), parse_date(end)
    return None if a is None or b is None else (b - a).days


def add_days(value: Any, days: Any) -> Any:
    """The ISO date `days` after `value` (before, when negative); `value` when not a date."""
    day = parse_date(value)
    if day is None or isinstance(days, bool) or not isinstance(days, int | float):
        return value
    if abs(days) > MAX_DAYS:
        raise ValueError(f"add_days moves at most {MAX_DAYS:,} days")
    try:
        return (day + timedelta(days=int(days))).isoformat()
    except OverflowError:
        return value
