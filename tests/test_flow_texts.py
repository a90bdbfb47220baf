"""What the shipped flows say never shows a missing value.

Real shop platforms often leave order fields empty that the demo orders always have: no delivery
estimate, no tracking link or number, no carrier, no return label, no delivery date, no total.
A flow that prints such a value unguarded tells the shopper "arrives by None" or links to
"(None)". These tests render what the flows say, against the demo orders and against the same
orders with those fields emptied as a platform would leave them, in every locale, and fail on
any trace of a missing value.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from flowengine.actions.demo_backend import DemoBackend
from flowengine.conversation import Conversation, Turn
from flowengine.engine import model as m
from flowengine.language import ir
from flowengine.testing import runner
from tests.conftest import FLOWS, TODAY

LOCALES = ("en", "cs", "th", "id", "ro")
ORDER_FLOWS = ("track_order", "report_problem", "return_order", "cancel_order")

# Traces of a value that was missing or of a template that did not render.
BAD = ("None", "null", "{{", "}}", "{%", "%}", "****")
_LINK = re.compile(r"\[[^\]]*\]\(([^)]*)\)")


def problems(text: str) -> list[str]:
    found = [f"contains {bad!r}" for bad in BAD if bad in text]
    found += [
        f"link to {target!r}"
        for target in _LINK.findall(text)
        if not target.startswith(("https://", "http://"))
    ]
    if "  " in text.strip(" "):
        found.append("a double space (a value left out mid-sentence)")
    return found


def shown(turn: Turn) -> Iterator[str]:
    """Every text the shopper sees in a turn: messages and the labels of their buttons."""
    for msg in turn.messages:
        if msg.sender == "shopper":
            continue
        yield msg.text
        for option in msg.options:
            yield str(option.get("label", ""))


def test_the_check_catches_what_it_is_for() -> None:
    assert problems("Arrives by None. [Track it](None)")
    assert problems("[Download your label]() and stick it on")
    assert problems("Delivered on ****.")
    assert problems("Hello {{ order.eta }}")
    assert problems("It's on its way with  and arrives today.")
    assert not problems("It's on its way with DHL. [Track](https://www.dhl.com/track?id=1).")
    assert not problems("พัสดุกำลังนำส่งโดย UPS และจะถึง**วันนี้**")


# -- backends that leave fields empty, as shop platforms do ----------------------------------

SHIPPING = ("carrier", "tracking_number", "tracking_url")


class PlatformLikeBackend(DemoBackend):
    """The demo orders with `empty` fields set to None (`item_names`: items without names),
    and returns created without a label link: a platform that prints no return labels."""

    def __init__(self, today: date, empty: tuple[str, ...] = ()) -> None:
        super().__init__(today)
        for order in self.orders.values():
            for name in empty:
                if name == "item_names":
                    for item in order["items"]:
                        item["name"] = ""
                else:
                    order[name] = None

    async def create_return(
        self, number: str, skus: list[str], reason: str, method: str
    ) -> dict[str, Any]:
        created = await super().create_return(number, skus, reason, method)
        created.pop("label_url", None)
        return created


# name -> a backend for it
VARIANTS = {
    "demo": lambda today: DemoBackend(today),
    # A tracking number but no link (WooCommerce custom carriers, label-less returns).
    "no links": lambda today: PlatformLikeBackend(today, ("tracking_url",)),
    # Shipped without tracking; the estimate and the delivery date are still known.
    "untracked": lambda today: PlatformLikeBackend(today, SHIPPING),
    # Everything a platform may leave out.
    "bare": lambda today: PlatformLikeBackend(
        today, (*SHIPPING, "eta", "delivered_at", "placed_at", "total", "item_names")
    ),
}


# -- walking the flows -----------------------------------------------------------------------

REPLY = "It arrived with a torn seam."
MAX_EVENTS = 12  # shopper actions after the order is found


def _events(state: m.State, input_kind: str | None) -> list[m.Event]:
    """What the shopper can do next, as far as the walk goes."""
    if state.waiting == "click" or (state.waiting == "text" and state.options):
        return [m.Choose(oid) for oid, _ in state.options]
    if state.waiting == "text":
        if state.step == "ask_number":  # another order: that is another walk
            return []
        return [m.Text("shopper@example.com" if input_kind == "email" else REPLY)]
    if state.waiting == "agent":
        return [m.HandoffUpdate("offline", "Mon–Fri 9:00–17:00"), m.HandoffUpdate("offline")]
    return []


def _input_kind(turn: Turn) -> str | None:
    last = [msg for msg in turn.messages if msg.sender != "shopper"]
    return ((last[-1].input or {}).get("kind")) if last else None


class Walk:
    """Every path through a flow from where a conversation stands, each step once per state;
    a path ends where the conversation leaves for another flow (walked on its own)."""

    def __init__(self, project: ir.Project, locale: str, make: Any) -> None:
        self.project, self.locale, self.make = project, locale, make
        self.seen: set[str] = set()
        self.texts: list[tuple[str, str]] = []  # (where, text)
        self.turns = 0

    def conversation(self, backend: DemoBackend) -> Conversation:
        return Conversation(
            self.project,
            backend,
            locale=self.locale,
            today=TODAY,
            clock=lambda: 0.0,
            call_apis=False,
        )

    def record(self, turn: Turn, where: str) -> None:
        self.turns += 1
        self.texts += [(where, text) for text in shown(turn)]

    async def run(self, flow: str, identify: tuple[str, str] | None) -> None:
        backend = self.make(TODAY)
        conv = self.conversation(backend)
        turn = await conv.start(flow)
        self.record(turn, flow)
        where = flow
        if identify is not None:
            for answer in identify:
                turn = await conv.send(m.Text(answer))
                where += f" > {answer}"
                self.record(turn, where)
        await self.explore(conv, backend, turn, flow, where, 0)

    async def explore(
        self,
        conv: Conversation,
        backend: DemoBackend,
        turn: Turn,
        home: str,
        where: str,
        depth: int,
    ) -> None:
        state = conv.state
        assert state is not None
        if depth >= MAX_EVENTS or state.flow not in (home, "identify_order"):
            return
        key = json.dumps(
            [state.flow, state.step, state.waiting, state.vars], sort_keys=True, default=str
        )
        if key in self.seen:
            return
        self.seen.add(key)
        for event in _events(state, _input_kind(turn)):
            fork_backend = copy.deepcopy(backend)
            fork = self.conversation(fork_backend)
            fork.state = state
            after = await fork.send(event)
            assert after.error is None, f"{where}: {after.error}"
            label = getattr(event, "option", None) or getattr(event, "text", None)
            step_where = f"{where} > {label or event}"
            self.record(after, step_where)
            await self.explore(fork, fork_backend, after, home, step_where, depth + 1)


def _orders() -> list[tuple[str, str]]:
    return [(o["number"], o["email"]) for o in DemoBackend(TODAY).orders.values()]


def _bad(texts: list[tuple[str, str]]) -> list[str]:
    return [f"{where}: {text!r}: {', '.join(p)}" for where, text in texts if (p := problems(text))]


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("locale", LOCALES)
async def test_order_flows_never_show_a_missing_value(
    project: ir.Project, locale: str, variant: str
) -> None:
    walk = Walk(project, locale, VARIANTS[variant])
    for number, email in _orders():
        for flow in ORDER_FLOWS:
            await walk.run(flow, (number, email))
    assert walk.turns > 500  # the walk went somewhere
    bad = _bad(walk.texts)
    assert not bad, f"{len(bad)} bad text(s) [{locale}, {variant}]:\n" + "\n".join(bad[:20])


@pytest.mark.parametrize("locale", LOCALES)
async def test_the_other_flows_never_show_a_missing_value(project: ir.Project, locale: str) -> None:
    walk = Walk(project, locale, VARIANTS["demo"])
    others = sorted(set(project.flows) - set(ORDER_FLOWS) - {"identify_order"})
    for flow in others:
        await walk.run(flow, None)
    assert walk.turns > len(others)
    bad = _bad(walk.texts)
    assert not bad, f"{len(bad)} bad text(s) [{locale}]:\n" + "\n".join(bad[:20])


async def test_every_message_of_the_conversation_tests_is_clean(
    project: ir.Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped conversation tests (flows/tests/) say what the shopper sees in each case;
    none of it may show a missing value, in any locale."""
    texts: list[tuple[str, str]] = []
    record = runner.record

    def spy(turn: Turn, conv: Conversation, locale: str, *args: Any) -> None:
        outcome = args[1]
        texts.extend((f"{outcome.case.name} [{locale}]", text) for text in shown(turn))
        record(turn, conv, locale, *args)

    monkeypatch.setattr(runner, "record", spy)
    files = runner.test_files([], str(FLOWS))
    report = await runner.run_tests(files, project, TODAY)
    assert report.outcomes and len(texts) > 1000
    bad = _bad(texts)
    assert not bad, "\n".join(bad[:20])


# -- the cases the demo backend cannot produce -------------------------------------------------


async def _converse(
    project: ir.Project, backend: DemoBackend, locale: str, flow: str, *events: m.Event
) -> list[str]:
    conv = Conversation(project, backend, locale=locale, today=TODAY, call_apis=False)
    out = list(shown(await conv.start(flow)))
    for event in events:
        turn = await conv.send(event)
        assert turn.error is None, turn.error
        out += shown(turn)
    return out


LABEL_BY_EMAIL = {
    "en": "We'll email you the prepaid label shortly: print it and stick it on the parcel.",
    "cs": "Předplacený štítek vám brzy pošleme e-mailem: vytiskněte ho a nalepte na balík.",
    "th": "เราจะส่งฉลากส่งคืนให้ทางอีเมลในไม่ช้าค่ะ พิมพ์แล้วติดบนพัสดุได้เลย",
    "id": "Label prabayar akan segera kami kirim lewat email: cetak lalu tempel di paket.",
    "ro": "Vă trimitem în scurt timp eticheta preplătită pe e-mail: "
    "tipăriți-o și lipiți-o pe colet.",
}


@pytest.mark.parametrize("locale", LOCALES)
async def test_a_return_label_without_a_link_is_promised_by_email(
    project: ir.Project, locale: str
) -> None:
    texts = await _converse(
        project,
        PlatformLikeBackend(TODAY),
        locale,
        "return_order",
        m.Text("1005"),
        m.Text("erik.dvorak@example.com"),
        m.Choose("TEE-WHT-L"),
        m.Choose("too_small"),
        m.Choose("label"),
    )
    created = next(t for t in texts if "RMA-1005-001" in t)
    assert LABEL_BY_EMAIL[locale] in created
    assert "label.pdf" not in created and "](" not in created
    assert not problems(created), created


@pytest.mark.parametrize("locale", LOCALES)
async def test_a_return_label_with_a_link_keeps_the_link(project: ir.Project, locale: str) -> None:
    texts = await _converse(
        project,
        DemoBackend(TODAY),
        locale,
        "return_order",
        m.Text("1005"),
        m.Text("erik.dvorak@example.com"),
        m.Choose("TEE-WHT-L"),
        m.Choose("too_small"),
        m.Choose("label"),
    )
    created = next(t for t in texts if "RMA-1005-001" in t)
    assert "](https://shop.example/returns/RMA-1005-001/label.pdf)" in created
    assert LABEL_BY_EMAIL[locale] not in created


MONEY_BACK = {
    "en": "If you have already paid, the money goes back to your original payment method",
    "cs": "Pokud jste ji už zaplatili, peníze se vrátí na původní platební metodu",
    "th": "หากชำระเงินไปแล้ว เงินจะคืนไปยังช่องทางเดิม",
    "id": "Jika sudah dibayar, dana akan kembali ke metode pembayaran awal",
    "ro": "Dacă ați plătit-o deja, banii revin pe metoda de plată inițială",
}


@pytest.mark.parametrize("locale", LOCALES)
async def test_a_cancelled_order_without_a_total_still_explains_the_refund(
    project: ir.Project, locale: str
) -> None:
    texts = await _converse(
        project,
        PlatformLikeBackend(TODAY, ("total",)),
        locale,
        "cancel_order",
        m.Text("1014"),
        m.Text("nok.somchai@example.com"),
        m.Choose("confirm"),
    )
    assert any(MONEY_BACK[locale] in t for t in texts), texts
    assert not [t for t in texts if problems(t)]


def test_the_walk_covers_the_new_demo_orders() -> None:
    numbers = {n for n, _ in _orders()}
    assert {"1015", "1016"} <= numbers
    orders = DemoBackend(TODAY).orders
    assert orders["1015"].get("tracking_url") is None and orders["1015"].get("eta") is None
    assert orders["1016"].get("tracking_url") is None and orders["1016"].get("carrier")


# -- text that reads as a native wrote it ------------------------------------------------------

# What a shopper should never read, whatever their language: a date as the computer stores it
# (it also breaks at its hyphens), an amount as code ("25.0 EUR"), a plural dodged with
# brackets ("item(s)"), a code with underscores ("out_for_delivery"), and in a language other
# than English, an order status in English.
_SMELLS = (
    (re.compile(r"\b\d{4}-\d{2}-\d{2}\b"), "an ISO date"),
    (re.compile(r"\d(?:[.,]\d+)? ?(?:EUR|CZK|THB|IDR|RON|USD)\b"), "an amount written as code"),
    (re.compile(r"\w\((?:s|e|es|i|y)\)"), "a plural in brackets"),
    (re.compile(r"\b[a-z]+_[a-z_]+\b"), "a code with underscores"),
)
_ENGLISH_STATUS = re.compile(
    r"\b(?:unfulfilled|processing|shipped|out for delivery|delivered|cancelled|refunded)\b"
)


def unnatural(text: str, locale: str) -> list[str]:
    words = _LINK.sub("", text)  # link targets are addresses, not words
    found = [what for pattern, what in _SMELLS if pattern.search(words)]
    if locale != "en" and _ENGLISH_STATUS.search(words.lower()):
        found.append("an English order status")
    return found


def test_the_native_check_catches_what_it_is_for() -> None:
    assert unnatural("It was delivered on **2026-03-31**.", "en") == ["an ISO date"]
    assert unnatural("Cancel order #1001 (1 item(s), 25.0 EUR)?", "en") == [
        "an amount written as code",
        "a plural in brackets",
    ]
    assert unnatural("Anulați comanda (4 produs(e))?", "ro") == ["a plural in brackets"]
    assert unnatural("Your order's status is **out_for_delivery**.", "en") == [
        "a code with underscores"
    ]
    assert unnatural("Stav vaší objednávky: **shipped**.", "cs") == ["an English order status"]
    assert not unnatural("[Track](https://x.example/2026-03-31/out_for_delivery)", "en")
    assert not unnatural(
        "Zásilka byla doručena **31.\u00a0března\u00a02026** (25,00\u00a0€).", "cs"
    )


@pytest.mark.parametrize("locale", LOCALES)
async def test_the_shipped_flows_read_as_a_native_wrote_them(
    project: ir.Project, locale: str
) -> None:
    walk = Walk(project, locale, VARIANTS["demo"])
    for number, email in _orders():
        for flow in ORDER_FLOWS:
            await walk.run(flow, (number, email))
    for flow in sorted(set(project.flows) - set(ORDER_FLOWS) - {"identify_order"}):
        await walk.run(flow, None)
    assert walk.turns > 500
    bad = [
        f"{where}: {text!r}: {', '.join(p)}"
        for where, text in walk.texts
        if (p := unnatural(text, locale))
    ]
    assert not bad, f"{len(bad)} unnatural text(s) [{locale}]:\n" + "\n".join(bad[:20])
