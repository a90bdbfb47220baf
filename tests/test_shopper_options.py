"""The flow language's options for text shoppers read: `if:` on choices, options that `set:`,
`choices_from` keeping the label shown, `validate: {date: {...}}` bounds against the engine's
`today`, `texts:` tables read with `translate`, and the errors `validate` gives for their misuse,
each at its file:line:col. Whole conversations through the pure engine."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from flowengine.engine import model as m
from flowengine.engine.step import start, step
from flowengine.language import ir, load_project
from flowengine.language.project import LoadResult

# 2026-11-22 12:00 UTC: the engine's clock, so `today` is 2026-11-22.
NOW = datetime(2026, 11, 22, 12, tzinfo=UTC).timestamp()
NBSP = "\u00a0"


def _load(tmp_path: Path, text: str) -> LoadResult:
    (tmp_path / "f.yaml").write_text(text, "utf-8")
    return load_project([tmp_path])


def _project(tmp_path: Path, text: str) -> ir.Project:
    result = _load(tmp_path, text)
    assert result.ok, result.render()
    assert result.project is not None
    return result.project


def _headlines(result: LoadResult) -> list[str]:
    return [d.headline() for d in result.diagnostics]


def _texts(r: m.Result) -> list[str]:
    return [msg.text for msg in r.messages if msg.sender != "shopper"]


def _options(r: m.Result) -> list[str]:
    return [oid for oid, _ in r.state.options]


CHOICES = """\
flow: f
steps:
  - set: {vip: false}
  - ask: size
    prompt: Which size?
    choices:
      - {value: s, label: Small}
      - {value: xl, label: Extra large, if: vip}
      - {value: m, label: Medium}
  - say: "You chose {{ size_label }} ({{ size }})."
    next: end
"""


def test_a_choice_whose_if_fails_is_not_offered_nor_accepted(tmp_path: Path) -> None:
    p = _project(tmp_path, CHOICES)
    r = start(p, now=NOW)
    assert _options(r) == ["s", "m"]
    clicked = step(p, r.state, m.Choose("xl"), NOW)
    assert clicked.error is not None and clicked.error.code == "unknown_option"
    # Typed, it is a wrong answer: asked again, with the same choices.
    typed = step(p, r.state, m.Text("Extra large"), NOW)
    assert typed.error is None and "size" not in typed.state.vars
    assert _options(typed) == ["s", "m"] and typed.state.tries == 1
    r = step(p, r.state, m.Text("medium"), NOW)
    assert r.error is None
    assert _texts(r) == ["You chose Medium (m)."]
    assert r.state.vars["size_label"] == "Medium"


def test_a_choice_whose_if_holds_is_offered(tmp_path: Path) -> None:
    p = _project(tmp_path, CHOICES.replace("{vip: false}", "{vip: true}"))
    r = start(p, now=NOW)
    assert _options(r) == ["s", "xl", "m"]
    r = step(p, r.state, m.Choose("xl"), NOW)
    assert _texts(r) == ["You chose Extra large (xl)."]


CHOICES_FROM = """\
flow: f
steps:
  - set:
      items: >-
        {{ [{'sku': 'TEE-WHT-L', 'name': 'Classic tee, white, L', 'final': false},
            {'sku': 'SWM-BLU-M', 'name': 'Swimsuit', 'final': true},
            {'sku': 'CAP-NVY', 'name': 'Cap, navy', 'final': false}] }}
  - ask: sku
    prompt: Which item?
    choices_from:
      {items: items, label: "{{ item.name }}", value: "{{ item.sku }}", if: not item.final}
    choices: [{value: all, label: Everything}]
  - say: "Returning **{{ sku_label }}**."
    next: end
"""


def test_choices_from_keeps_the_label_for_the_confirmation(tmp_path: Path) -> None:
    p = _project(tmp_path, CHOICES_FROM)
    r = start(p, now=NOW)
    # The final-sale item is hidden by the item `if:`; the static choice comes after.
    assert r.state.options == (
        ("TEE-WHT-L", "Classic tee, white, L"),
        ("CAP-NVY", "Cap, navy"),
        ("all", "Everything"),
    )
    assert step(p, r.state, m.Choose("SWM-BLU-M"), NOW).error is not None
    r = step(p, r.state, m.Choose("TEE-WHT-L"), NOW)
    assert _texts(r) == ["Returning **Classic tee, white, L**."]
    assert r.state.vars["sku"] == "TEE-WHT-L"
    assert r.state.vars["sku_label"] == "Classic tee, white, L"


OPTION_SET = """\
flow: f
steps:
  - id: pick
    menu: How should we reach you?
    options:
      - {id: mail, label: By email, set: {channel: email, priority: 1}, goto: confirm}
      - {id: phone, label: By phone, set: {channel: phone, priority: "{{ 1 + 1 }}"}, goto: confirm}
      - {id: later, label: Not now, if: channel is defined, set: {channel: null}, end: resolved}
  - id: confirm
    say: "We'll use {{ channel }} (priority {{ priority }})."
    next: pick
"""


def test_an_option_sets_variables_before_it_goes_on(tmp_path: Path) -> None:
    p = _project(tmp_path, OPTION_SET)
    r = start(p, now=NOW)
    assert _options(r) == ["mail", "phone"]  # `later` needs a channel set
    r = step(p, r.state, m.Choose("phone"), NOW)
    assert _texts(r)[0] == "We'll use phone (priority 2)."
    assert r.state.vars == {"channel": "phone", "priority": 2}
    assert _options(r) == ["mail", "phone", "later"]
    r = step(p, r.state, m.Choose("mail"), NOW)
    assert r.state.vars == {"channel": "email", "priority": 1}
    r = step(p, r.state, m.Choose("later"), NOW)
    assert r.state.waiting == "ended" and r.state.resolution == "resolved"
    assert r.state.vars["channel"] is None


DATES = """\
flow: f
locales: [en, cs]
steps:
  - ask: bought
    prompt: {en: When did you buy it?, cs: Kdy jste ho koupili?}
    validate: {date: {past: true}}
    max_tries: 2
    on_fail: gave_up
  - ask: visit
    prompt: {en: When shall we come?, cs: Kdy máme přijet?}
    validate: {date: {future: true, max: 30}}
  - say:
      en: >-
        Bought {{ bought | date('long') }}, {{ bought | days_since }} days ago;
        visit {{ visit | date('long') }}.
      cs: "Koupeno {{ bought | date('long') }}; návštěva {{ visit | date('long') }}."
    next: end
  - id: gave_up
    say: {en: Let's ask a person., cs: Zeptáme se kolegy.}
    next: end
"""


def test_a_purchase_date_in_the_future_is_refused_with_todays_date(tmp_path: Path) -> None:
    p = _project(tmp_path, DATES)
    r = start(p, now=NOW, locale="cs")
    r = step(p, r.state, m.Text("15.01.2099"), NOW)
    assert r.error is None and r.state.step == "steps[0]" and "bought" not in r.state.vars
    assert _texts(r) == [
        f"To datum je v budoucnosti. Zadejte prosím datum nejpozději dnešní, "
        f"22.{NBSP}listopadu{NBSP}2026."
    ]
    assert r.events[-1]["type"] == "text_given" and r.events[-1]["valid"] is False
    # Today is allowed; a visit yesterday is not, nor one more than 30 days ahead.
    r = step(p, r.state, m.Text("2026-11-22"), NOW)
    assert r.state.vars["bought"] == "2026-11-22"
    r = step(p, r.state, m.Text("21.11.2026"), NOW)
    assert _texts(r) == [
        f"To datum už uplynulo. Zadejte prosím dnešní datum, 22.{NBSP}listopadu{NBSP}2026, "
        "nebo pozdější."
    ]
    r = step(p, r.state, m.Text("2026-12-23"), NOW)
    assert _texts(r)[0].startswith("Toto datum nemohu přijmout")
    r = step(p, r.state, m.Text("2026-12-22"), NOW)
    assert r.state.vars["visit"] == "2026-12-22"
    assert r.state.waiting == "ended"


def test_date_bounds_move_with_the_clock_and_count_as_tries(tmp_path: Path) -> None:
    p = _project(tmp_path, DATES)
    r = start(p, now=NOW, locale="en")
    r = step(p, r.state, m.Text("2099-01-15"), NOW)
    assert _texts(r) == [
        f"That date is in the future. Please enter a date up to today, November{NBSP}22,{NBSP}2026."
    ]
    # A second wrong answer (max_tries: 2) takes on_fail.
    r = step(p, r.state, m.Text("2026-11-23"), NOW)
    assert _texts(r) == ["Let's ask a person."]
    # A day later, 2026-11-23 is in the past and accepted; days_since counts from today.
    tomorrow = NOW + 86_400
    r = start(p, now=tomorrow, locale="en")
    r = step(p, r.state, m.Text("2026-11-23"), tomorrow)
    r = step(p, r.state, m.Text("2026-11-23"), tomorrow)
    assert _texts(r) == [
        f"Bought November{NBSP}23,{NBSP}2026, 0 days ago; visit November{NBSP}23,{NBSP}2026."
    ]
    # A malformed date still gets the validator's own message.
    r = start(p, now=NOW, locale="en")
    r = step(p, r.state, m.Text("yesterday"), NOW)
    assert _texts(r) == ["Please enter a date, e.g. 2026-03-31."]


TEXTS = """\
flow: f
locales: [en, cs]
texts:
  status:
    shipped: {en: shipped, cs: odeslaná}
    "*": {en: being handled, cs: v řešení}
steps:
  - ask: status
    prompt: {en: Status?, cs: Stav?}
  - say:
      en: "Your order is **{{ status | translate('status') }}** (today is {{ today }})."
      cs: "Objednávka je **{{ status | translate('status') }}**."
    next: end
"""


def test_a_status_is_said_in_the_shoppers_words(tmp_path: Path) -> None:
    p = _project(tmp_path, TEXTS)
    for locale, status, said in [
        ("cs", "shipped", "Objednávka je **odeslaná**."),
        ("cs", "on_hold", "Objednávka je **v řešení**."),
        ("en", "shipped", "Your order is **shipped** (today is 2026-11-22)."),
    ]:
        r = start(p, now=NOW, locale=locale)
        r = step(p, r.state, m.Text(status), NOW)
        assert _texts(r) == [said]


def _documented_warranty_steps() -> str:
    """The warranty example of docs/flow-language.md, as written there."""
    docs = (Path(__file__).parents[1] / "docs" / "flow-language.md").read_text("utf-8")
    after = docs.split("A warranty flow ages a purchase date:", 1)[1]
    return after.split("```yaml\n", 1)[1].split("```", 1)[0]


def test_the_documented_warranty_flow_ages_a_purchase_date(tmp_path: Path) -> None:
    p = _project(tmp_path, "flow: w\nsteps:\n" + _documented_warranty_steps() + "- end: resolved\n")
    for bought, said in [
        ("2025-01-10", f"It is under warranty until January{NBSP}10,{NBSP}2027."),
        ("22.11.2024", f"It is under warranty until November{NBSP}22,{NBSP}2026."),
        ("21.11.2024", f"The two-year warranty ended on November{NBSP}21,{NBSP}2026."),
    ]:
        r = start(p, now=NOW)
        r = step(p, r.state, m.Text(bought), NOW)
        assert _texts(r) == [said], bought


# -- misuse, at file:line:col -----------------------------------------------------------------


def test_a_filter_called_wrongly_is_reported_at_its_text(tmp_path: Path) -> None:
    result = _load(
        tmp_path,
        "flow: f\nsteps:\n  - say: \"{{ 5 | money('euro') }}\"\n    next: end\n"
        "  - say: \"{{ 5 | plural(one='x') }}\"\n    next: end\n",
    )
    assert not result.ok
    heads = _headlines(result)
    assert any(
        h.endswith(
            "f.yaml:3:10: error[E113]: template error: filter 'money': "
            "'euro' is not a currency code (ISO 4217, e.g. 'EUR')"
        )
        for h in heads
    ), heads
    assert any(":5:10: error[E113]" in h and "`other` is required" in h for h in heads), heads


def test_a_texts_table_that_does_not_exist_is_reported(tmp_path: Path) -> None:
    result = _load(
        tmp_path,
        "flow: f\ntexts:\n  status: {shipped: sent}\nsteps:\n"
        "  - say: \"{{ 'shipped' | translate('statuses') }}\"\n    next: end\n",
    )
    assert not result.ok
    (d,) = [d for d in result.diagnostics if d.code == "E113"]
    assert (d.position.line, d.position.column) == (5, 10)
    assert "`translate('statuses')` reads a texts table this flow does not declare" in d.message
    assert d.hint is not None and "status" in d.hint


def test_an_if_on_a_choice_reading_nothing_set_is_reported(tmp_path: Path) -> None:
    result = _load(
        tmp_path,
        "flow: f\nsteps:\n  - ask: size\n    prompt: Size?\n    choices:\n"
        "      - {value: s, label: Small, if: membr.vip}\n      - {value: m, label: Medium}\n"
        "  - say: ok\n    next: end\n",
    )
    heads = _headlines(result)
    assert any("E110" in h and "membr" in h for h in heads), heads


def test_an_option_set_with_a_broken_template_is_reported(tmp_path: Path) -> None:
    result = _load(
        tmp_path,
        "flow: f\nsteps:\n  - menu: Pick\n    options:\n"
        '      - {label: A, set: {x: "{{ 1 + }}"}, end: resolved}\n',
    )
    (d,) = [d for d in result.diagnostics if d.code == "E113"]
    assert d.position.line == 5


def test_date_bounds_no_date_can_pass_are_refused(tmp_path: Path) -> None:
    for bounds, line_col in [
        ("{past: true, future: true}", (5, 22)),
        ("{min: 5, max: -5}", (5, 22)),
    ]:
        result = _load(
            tmp_path,
            "flow: f\nsteps:\n  - ask: d\n    prompt: Date?\n"
            f"    validate: {{date: {bounds}}}\n  - say: ok\n    next: end\n",
        )
        (d,) = [d for d in result.diagnostics if d.code == "E118"]
        assert (d.position.line, d.position.column) == line_col, d.headline()
        assert "no date can pass these bounds" in d.message


def test_an_unknown_date_bound_is_a_schema_error(tmp_path: Path) -> None:
    result = _load(
        tmp_path,
        "flow: f\nsteps:\n  - ask: d\n    prompt: Date?\n"
        "    validate: {date: {before: today}}\n  - say: ok\n    next: end\n",
    )
    assert not result.ok
    assert any(d.code == "E010" and d.position.line == 5 for d in result.diagnostics), (
        result.render()
    )


def test_a_date_bound_of_the_wrong_type_is_named_at_its_value(tmp_path: Path) -> None:
    result = _load(
        tmp_path,
        "flow: f\nsteps:\n  - ask: d\n    prompt: Date?\n"
        '    validate: {date: {past: "yes"}}\n  - say: ok\n    next: end\n',
    )
    (d,) = result.diagnostics
    assert d.headline().endswith("f.yaml:5:29: error[E012]: expected true/false, found text")


def test_a_bound_gets_its_own_message_and_retry_the_rest(tmp_path: Path) -> None:
    p = _project(
        tmp_path,
        "flow: f\nsteps:\n  - ask: d\n    prompt: Date?\n"
        "    validate: {date: {min: -365, max: 0}}\n"
        "    retry: Like 2026-03-31, please.\n  - say: ok\n    next: end\n",
    )
    r = start(p, now=NOW)
    r = step(p, r.state, m.Text("soon"), NOW)
    assert _texts(r) == ["Like 2026-03-31, please."]
    r = step(p, r.state, m.Text("2025-11-21"), NOW)  # 366 days ago
    assert _texts(r) == [
        "That date is outside the dates I can accept. Please check the day and the year."
    ]
    r = step(p, r.state, m.Text("2025-11-22"), NOW)  # 365 days ago
    assert _texts(r) == ["ok"] and r.state.vars["d"] == "2025-11-22"
