"""Money, numbers, dates and plural forms in templates, as a native reader of each shipped locale
writes them (CLDR through Babel), and the load-time refusal of a filter called wrongly."""

from __future__ import annotations

from typing import Any

import pytest

from flowengine.language.templates import CHAIN, TABLES, TODAY, TemplateProblem, template
from flowengine.language.text import Text

NBSP = "\u00a0"


def _render(source: str, locale: str, **variables: Any) -> str:
    return template(source).render({CHAIN: (locale, "en"), **variables})


@pytest.mark.parametrize(
    ("locale", "eur", "thb", "czk"),
    [
        ("en", "€25.00", "THB25.00", "CZK1,234.50"),
        ("cs", f"25,00{NBSP}€", f"25,00{NBSP}THB", f"1{NBSP}234,50{NBSP}Kč"),
        ("th", "€25.00", "฿25.00", "CZK1,234.50"),
        ("id", "€25,00", "฿25,00", "CZK1.234,50"),
        ("ro", f"25,00{NBSP}EUR", f"25,00{NBSP}THB", f"1.234,50{NBSP}CZK"),
    ],
)
def test_money_per_locale(locale: str, eur: str, thb: str, czk: str) -> None:
    assert _render("{{ t | money(c) }}", locale, t=25.0, c="EUR") == eur
    assert _render("{{ t | money('THB') }}", locale, t="25") == thb
    assert _render("{{ 1234.5 | money('CZK') }}", locale) == czk


def test_money_without_cents_only_drops_them_from_whole_amounts() -> None:
    assert _render("{{ 60 | money('EUR', cents=false) }}", "en") == "€60"
    assert _render("{{ 60 | money('EUR', cents=false) }}", "cs") == f"60{NBSP}€"
    assert _render("{{ 2.9 | money('EUR', cents=false) }}", "cs") == f"2,90{NBSP}€"


def test_money_leaves_what_is_not_an_amount_as_it_is() -> None:
    # A missing total or a word reads as itself: the rest of the sentence is not lost.
    assert _render("[{{ t | money('EUR') }}]", "en", t="n/a") == "[n/a]"
    assert _render("[{{ t | money('EUR') }}]", "en", t=True) == "[True]"
    assert _render("[{{ missing | money('EUR') }}]", "en") == "[]"
    # No currency: the number alone, in the locale's format.
    assert _render("{{ 1234.5 | money(c) }}", "cs") == f"1{NBSP}234,5"


@pytest.mark.parametrize(
    ("locale", "plain", "two", "whole"),
    [
        ("en", "1,234.5", "1,234.50", "1,235"),
        ("cs", f"1{NBSP}234,5", f"1{NBSP}234,50", f"1{NBSP}235"),
        ("th", "1,234.5", "1,234.50", "1,235"),
        ("id", "1.234,5", "1.234,50", "1.235"),
        ("ro", "1.234,5", "1.234,50", "1.235"),
    ],
)
def test_number_per_locale(locale: str, plain: str, two: str, whole: str) -> None:
    assert _render("{{ n | number }}", locale, n=1234.5) == plain
    assert _render("{{ n | number(2) }}", locale, n=1234.5) == two
    # Rounded as CLDR's number patterns round.
    assert _render("{{ n | number(decimals=0) }}", locale, n=1234.6) == whole


@pytest.mark.parametrize(
    ("locale", "medium", "long"),
    [
        ("en", "Mar 31, 2026", "March 31, 2026"),
        ("cs", "31. 3. 2026", "31. března 2026"),
        ("th", "31 มี.ค. 2026", "31 มีนาคม ค.ศ. 2026"),
        ("id", "31 Mar 2026", "31 Maret 2026"),
        ("ro", "31 mar. 2026", "31 martie 2026"),
    ],
)
def test_dates_per_locale_never_break(locale: str, medium: str, long: str) -> None:
    nb = {"medium": medium.replace(" ", NBSP), "long": long.replace(" ", NBSP)}
    assert _render("{{ d | date }}", locale, d="2026-03-31") == nb["medium"]
    assert _render("{{ d | date('long') }}", locale, d="2026-03-31") == nb["long"]
    # A datetime is written as its date; no hyphen and no plain space to break the line at.
    out = _render("{{ d | date(format='long') }}", locale, d="2026-03-31T23:10:00+00:00")
    assert out == nb["long"] and "-" not in out and " " not in out


def test_a_date_that_does_not_parse_reads_as_itself() -> None:
    assert _render("{{ d | date }}", "en", d="soon") == "soon"
    assert _render("{{ d | date }}", "en", d="2026-02-30") == "2026-02-30"


@pytest.mark.parametrize(
    ("n", "category"),
    [(0, "other"), (1, "one"), (2, "few"), (4, "few"), (5, "other"), (22, "other"), (1.5, "many")],
)
def test_czech_plural_categories(n: float, category: str) -> None:
    # CLDR's Czech: one (1), few (2-4), many (fractions), other (0, 5 and up, 22 too).
    src = "{{ n | plural(one='one', few='few', many='many', other='other') }}"
    assert _render(src, "cs", n=n) == category
    # A category the text does not give takes `other`.
    assert _render("{{ n | plural(one='one', other='other') }}", "cs", n=n) == (
        "one" if category == "one" else "other"
    )


def test_plural_words_per_locale() -> None:
    cs = "{{ n }} {{ n | plural(one='položka', few='položky', many='položky', other='položek') }}"
    assert [_render(cs, "cs", n=n) for n in (1, 2, 5, 21)] == [
        "1 položka",
        "2 položky",
        "5 položek",
        "21 položek",
    ]
    ro = "{{ n }} {{ n | plural(one='zi', few='zile', other='de zile') }}"
    assert [_render(ro, "ro", n=n) for n in (1, 2, 19, 20, 101)] == [
        "1 zi",
        "2 zile",
        "19 zile",
        "20 de zile",
        "101 zile",
    ]
    en = "{{ n | plural(one='item', other='items') }}"
    assert [_render(en, "en", n=n) for n in (0, 1, 2)] == ["items", "item", "items"]
    # Thai has one form: `other`, whatever the count.
    assert _render("{{ n | plural(one='x', other='ชิ้น') }}", "th", n=1) == "ชิ้น"
    # A missing count is `other`.
    assert _render(en, "en") == "items"


def test_today_and_date_arithmetic() -> None:
    variables = {TODAY: "2026-11-22"}
    assert _render("{{ d | days_since }}", "en", d="2026-11-01", **variables) == "21"
    assert _render("{{ d | days_until }}", "en", d="2026-12-24", **variables) == "32"
    assert _render("{{ today | add_days(30) }}", "en", **variables) == "2026-12-22"
    assert _render("{{ today | add_days(-365) | date('long') }}", "cs", **variables) == (
        f"22.{NBSP}listopadu{NBSP}2025"
    )
    warranty = "{% if d | days_since > 730 %}expired{% else %}covered{% endif %}"
    assert _render(warranty, "en", d="2024-11-21", **variables) == "expired"
    assert _render(warranty, "en", d="2024-11-23", **variables) == "covered"
    # Not a date: nothing to count, and the text still renders.
    assert _render("[{{ d | days_since }}]", "en", d="last week", **variables) == "[None]"
    # A move of more than a hundred years is refused: that text shows nothing.
    assert _render("{{ today | add_days(n) }}", "en", n=10**9, **variables) == ""


def test_translate_reads_the_flow_table_in_the_rendered_locale() -> None:
    tables = {
        "status": {
            "shipped": {"en": "shipped", "cs": "odeslaná"},
            "*": {"en": "being handled", "cs": "v řešení"},
        }
    }
    text = Text.of(
        {"en": "Status: {{ s | translate('status') }}", "cs": "Stav: {{ s | translate('status') }}"}
    )
    variables = {TABLES: tables, "s": "shipped"}
    assert text.render(("cs", "en"), variables) == ("Stav: odeslaná", "cs")
    assert text.render(("en",), variables) == ("Status: shipped", "en")
    assert text.render(("cs", "en"), {**variables, "s": "on_hold"}) == ("Stav: v řešení", "cs")
    # A text that fell back to English is formatted, and translated, in English.
    english_only = Text.of({"en": "{{ s | translate('status') }}, {{ 2 | money('EUR') }}"})
    assert english_only.render(("cs", "en"), variables) == ("shipped, €2.00", "en")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ t | money }}", "filter 'money' takes 1 argument, not 0"),
        ("{{ t | money('EUR', 'USD') }}", "filter 'money' takes 1 argument, not 2"),
        ("{{ t | money('euro') }}", "'euro' is not a currency code"),
        ("{{ t | money('EUR', round=2) }}", "filter 'money': unknown argument 'round'"),
        ("{{ d | date('longest') }}", "filter 'date': unknown format 'longest'"),
        ("{{ n | number(12) }}", "decimals must be a whole number from 0 to 6"),
        ("{{ n | plural(one='item') }}", "`other` is required"),
        ("{{ n | plural(single='item', other='items') }}", "unknown argument 'single'"),
        ("{{ n | plural('item', 'items') }}", "filter 'plural' takes no arguments in parentheses"),
        ("{{ s | translate }}", "filter 'translate' takes 1 argument, not 0"),
        ("{{ s | translate(table) }}", "the table must be written as a name in quotes"),
        ("{{ d | days_since(3) }}", "filter 'days_since' takes no arguments"),
        ("{{ d | add_days }}", "filter 'add_days' takes 1 argument, not 0"),
        ("{{ t | money(*args) }}", "`*` or `**` arguments"),
    ],
)
def test_a_filter_called_wrongly_is_refused_at_load(source: str, message: str) -> None:
    with pytest.raises(TemplateProblem, match=None) as caught:
        template(source).check()
    assert message in str(caught.value)
    assert caught.value.hint  # says how to call it


def test_an_unknown_filter_names_the_locale_filters_too() -> None:
    with pytest.raises(TemplateProblem) as caught:
        template("{{ t | currency('EUR') }}")
    assert "money" in str(caught.value) and "plural" in str(caught.value)
