"""The template sandbox: hostile authors and shoppers can neither run code nor blow up memory."""

from __future__ import annotations

import pytest

from flowengine.language.templates import TemplateProblem, expression, template, value
from flowengine.language.validators import BUILTIN, regex_problem


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x' * 100000 }}",
        "{{ 'x'.center(10**9) }}",
        "{{ 9**9**9 }}",
        "{{ ''.__class__.__mro__ }}",
        "{{ order.__init__.__globals__ }}",
        "{{ lipsum(10**6) }}",
        "{{ cycler }}{{ joiner }}{{ namespace }}",
        "{{ range(10**9) | list }}",
    ],
)
def test_hostile_templates_render_to_nothing(source: str) -> None:
    assert template(source).render({"order": {"n": 1}}) == ""


@pytest.mark.parametrize(
    "source",
    [
        "{% for i in range(1000) %}{% for j in range(1000) %}x{% endfor %}{% endfor %}",
        "{% macro m() %}{% endmacro %}",
        "{% set x = 1 %}",
        "{{ x | center(9999999) }}",
        "{{ x | format(1) }}",
        "{{ unclosed ",
    ],
)
def test_unsafe_or_broken_templates_are_refused_at_load(source: str) -> None:
    with pytest.raises(TemplateProblem):
        template(source)


def test_json_keys_win_over_methods_and_output_is_capped() -> None:
    assert expression("eligibility.items").evaluate({"eligibility": {"items": [1]}}) == [1]
    assert len(template("{{ x }}").render({"x": "y" * 10_000})) == 4000
    assert template("Hi {{ name | title }}").render({"name": "anna"}) == "Hi Anna"
    assert template("{{ missing.deeply.nested }}!").render({}) == "!"


def test_whole_expression_values_keep_their_type() -> None:
    v = value("{{ cancellation.order }}")
    assert v.evaluate({"cancellation": {"order": {"a": 1}}}) == {"a": 1}  # type: ignore[union-attr]


def test_defined_guards_are_understood() -> None:
    e = expression("order is defined and order.status == 'shipped'")
    assert e.proves == {"order"} and e.names == frozenset()
    assert expression("order.status").names == {"order"}


def test_regex_guard_and_validators() -> None:
    assert regex_problem("(a+)+$") is not None
    assert regex_problem("(x*)*") is not None
    assert regex_problem("[") is not None
    assert regex_problem("[A-Z0-9]{3,20}") is None
    assert BUILTIN["email"].check(" Anna@Example.COM ") == "Anna@example.com"
    assert BUILTIN["email"].check("<script>@x.y") is None
    assert BUILTIN["order_number"].check("# 1001") == "1001"
    assert BUILTIN["phone"].check("+420 777 123 456") == "+420777123456"
    assert BUILTIN["number"].check("3,5") == 3.5
    assert BUILTIN["date"].check("31.12.2026") == "2026-12-31"
    assert BUILTIN["date"].check("31.02.2026") is None


def test_values_in_bot_text_are_escaped_for_its_markup_and_nowhere_else() -> None:
    from flowengine.language.templates import template

    t = template("Hi **{{ name }}**, [track it]({{ url }}){% if vip %} **VIP**{% endif %}.")
    hostile = {"name": "[Refund](https://evil.example) **VIP** a\\b", "url": "https://t.example/1"}
    shown = t.render({**hostile, "vip": True}, markup=True)
    assert shown == (
        "Hi **\\[Refund\\](https://evil.example) \\*\\*VIP\\*\\* a\\\\b**, "
        "[track it](https://t.example/1) **VIP**."
    )
    # Values kept as data (set:, with:) and button labels are not bot markup: unchanged.
    assert t.render(hostile).startswith("Hi **[Refund](https://evil.example) **VIP** a\\b**")


def test_the_widget_and_the_console_read_bot_markup_alike() -> None:
    """One markup, two readers (the widget must stay one script): the same expressions."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    widget = (root / "widget" / "widget.js").read_text("utf-8")
    console = (root / "flowengine" / "handoff" / "console" / "console.js").read_text("utf-8")
    for name in ("RICH", "ESCAPED"):
        found = [re.findall(rf"var {name} = (/.*/g);", js) for js in (widget, console)]
        assert len(found[0]) == 1 and found[0] == found[1], name
