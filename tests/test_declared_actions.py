"""Actions a project declares in flowengine.yaml: the exchange example (docs/examples/exchange)
on a real server, against a stock API served in the test's own loop; and every static error
`flowengine validate` reports for them, at its file:line:col."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flowengine.actions.declared import MAX_ANSWER_BYTES, build, encode
from flowengine.cli.main import main as cli_main
from flowengine.language import load_project
from flowengine.server.config import ServerConfig
from flowengine.server.runtime import Runtime
from flowengine.testing.runner import run_cli
from tests.app_server import AppServer
from tests.redis_server import free_port
from tests.server_process import Client, Listening, eventually

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "exchange"
TOKEN = "s3cr3t-stock-token-do-not-log"


class StockApi(Listening):
    """The shop's stock API, as the example declares it: GET /api/stock/{sku}?size=..."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[Request] = []
        self.release = asyncio.Event()  # lets the slow answer go when the test ends
        app = Starlette(routes=[Route("/api/stock/{sku}", self.stock), Route("/v2/{sku}", self.v2)])
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, lifespan="off", log_level="error")
        )
        self._task: asyncio.Task[None] | None = None

    async def stock(self, request: Request) -> Response:
        self.requests.append(request)
        size = request.query_params.get("size")
        if request.path_params["sku"] == "CAP-NVY":
            return JSONResponse({"error": "no such size"}, 404)
        if size == "M":
            return JSONResponse({"in_stock": True, "stock": {"qty": 3}})
        if size == "XL":
            return JSONResponse({"in_stock": False, "stock": {"qty": 0}})
        if size == "S":
            return JSONResponse({"error": "database down"}, 500)
        if size == "XS":
            await self.release.wait()  # longer than the action's timeout
            return JSONResponse({"in_stock": True})
        # L: an answer over the size cap (a JSON string of padding).
        return Response(
            b'{"in_stock": true, "pad": "' + b"x" * MAX_ANSWER_BYTES + b'"}',
            media_type="application/json",
        )

    async def v2(self, request: Request) -> Response:
        self.requests.append(request)
        return JSONResponse({"in_stock": True, "stock": {"qty": 99}})

    async def __aenter__(self) -> StockApi:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            await asyncio.sleep(0.005)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        self._server.should_exit = True
        assert self._task is not None
        await self._task


def example_project(tmp_path: Path, api: StockApi, *, timeout: float = 1.0) -> Path:
    """The exchange example, its stock check pointed at `api`."""
    flows = tmp_path / "flows"
    shutil.copytree(EXAMPLE, flows)
    project = flows / "flowengine.yaml"
    text = project.read_text("utf-8")
    text = text.replace("https://shop.example/api/stock/", f"{api.http}/api/stock/")
    text = text.replace("timeout: 3", f"timeout: {timeout}")
    project.write_text(text, "utf-8")
    return flows


def config(flows: Path, tmp_path: Path) -> ServerConfig:
    return ServerConfig(
        flows_dir=str(flows),
        handoff_config=None,
        agents_file=str(tmp_path / "agents.json"),
        new_sessions_per_minute=1000,
    )


@pytest.fixture
async def api() -> AsyncIterator[StockApi]:
    async with StockApi() as stock:
        yield stock


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("STOCK_API_TOKEN", TOKEN)
    return TOKEN


def bot_message(want: Callable[[dict[str, Any]], bool]) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f.get("type") == "message" and f["from"] == "bot" and want(f)


def has_option(option: str) -> Callable[[dict[str, Any]], bool]:
    return bot_message(lambda f: option in [o["id"] for o in f["options"]])


async def ask_for_size(server: AppServer, item: str, size: str) -> Client:
    """A shopper who asks to exchange `item` of order 1005 for `size`."""
    shopper = await Client.connect(server.ws_url)
    await shopper.until(bot_message(lambda f: "order number" in f["text"]))
    await shopper.act({"type": "text", "text": "1005"})
    await shopper.act({"type": "text", "text": "erik.dvorak@example.com"})
    await shopper.until(has_option(item))
    await shopper.act({"type": "choose", "option": item})
    await shopper.until(has_option(size))
    await shopper.act({"type": "choose", "option": size})
    return shopper


async def answer_to(server: AppServer, item: str, size: str) -> dict[str, Any]:
    """What the bot says after the stock check of `item` in `size` (a message with options)."""
    shopper = await ask_for_size(server, item, size)
    frame = await shopper.until(bot_message(lambda f: bool(f["options"])))
    await shopper.close()
    return frame


def options(frame: dict[str, Any]) -> list[str]:
    return [o["id"] for o in frame["options"]]


# -- the example on a real server ------------------------------------------------------------


async def test_in_stock_files_the_exchange_and_sends_the_token(
    tmp_path: Path, api: StockApi, token: str
) -> None:
    async with AppServer(config(example_project(tmp_path, api), tmp_path)) as server:
        frame = await answer_to(server, "TEE-WHT-L", "M")
    assert "size **M** is in stock" in frame["text"]
    assert "**T-1001**" in frame["text"]  # the ticket, from the demo order backend
    assert options(frame) == ["person", "done"]
    [request] = api.requests
    assert request.method == "GET"
    assert request.url.path == "/api/stock/TEE-WHT-L"
    assert request.url.query == "size=M"
    assert request.headers["authorization"] == f"Bearer {token}"
    assert request.headers["accept"] == "application/json"


async def test_out_of_stock_offers_another_size_or_a_person(
    tmp_path: Path, api: StockApi, token: str
) -> None:
    async with AppServer(config(example_project(tmp_path, api), tmp_path)) as server:
        shopper = await ask_for_size(server, "TEE-WHT-L", "XL")
        frame = await shopper.until(has_option("another"))
        assert "size **XL** is out of stock" in frame["text"]
        assert options(frame) == ["another", "person", "done"]
        await shopper.act({"type": "choose", "option": "another"})
        await shopper.until(has_option("M"))
        await shopper.act({"type": "choose", "option": "M"})
        filed = await shopper.until(has_option("done"))
        assert "size **M** is in stock" in filed["text"]
        await shopper.close()
    assert [r.query_params["size"] for r in api.requests] == ["XL", "M"]


async def test_404_takes_the_not_found_exit(tmp_path: Path, api: StockApi, token: str) -> None:
    async with AppServer(config(example_project(tmp_path, api), tmp_path)) as server:
        frame = await answer_to(server, "CAP-NVY", "L")
    assert "doesn't come in size **L**" in frame["text"]
    assert options(frame) == ["another", "person"]


@pytest.mark.parametrize(
    ("size", "logged"),
    [
        ("S", "answered 500"),
        ("XS", "timed out after 0.5s"),
        ("L", f"answered more than {MAX_ANSWER_BYTES} bytes"),
    ],
    ids=["500", "timeout", "oversized"],
)
async def test_failures_take_the_error_exit_and_log_no_secret(
    tmp_path: Path,
    api: StockApi,
    token: str,
    size: str,
    logged: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    flows = example_project(tmp_path, api, timeout=0.5)
    async with AppServer(config(flows, tmp_path)) as server:
        frame = await answer_to(server, "TEE-WHT-L", size)
    assert "can't check our stock" in frame["text"]
    assert options(frame) == ["retry", "person"]
    lines = [r.getMessage() for r in caplog.records]
    assert any(f"action stock.check: GET 127.0.0.1 {logged}" in line for line in lines), lines
    # Whoever logs (flowengine, httpx, httpcore, uvicorn), at any level: never the token.
    everything = "\n".join(lines + [r.exc_text or "" for r in caplog.records])
    assert TOKEN not in everything
    # Nor, in flowengine's own lines, the url's path and query (shoppers' data).
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("flowengine")]
    assert ours and not any("TEE-WHT-L" in line or "size=" in line for line in ours)


async def test_retry_after_an_error(tmp_path: Path, api: StockApi, token: str) -> None:
    async with AppServer(config(example_project(tmp_path, api), tmp_path)) as server:
        shopper = await ask_for_size(server, "TEE-WHT-L", "S")
        await shopper.until(has_option("retry"))
        await shopper.act({"type": "choose", "option": "retry"})
        await eventually(lambda: len(api.requests) == 2)
        again = await shopper.until(has_option("retry"))
        assert "can't check our stock" in again["text"]
        await shopper.close()


async def test_a_session_keeps_the_declaration_it_started_with(
    tmp_path: Path, api: StockApi, token: str
) -> None:
    """The server pins a session to its flow version; the version holds the declared actions."""
    flows = example_project(tmp_path, api)
    async with AppServer(config(flows, tmp_path)) as server:
        before = await Client.connect(server.ws_url)
        await before.until(bot_message(lambda f: "order number" in f["text"]))
        project = flows / "flowengine.yaml"
        project.write_text(
            project.read_text("utf-8").replace("/api/stock/{{ sku }}", "/v2/{{ sku }}"), "utf-8"
        )
        assert await server.runtime.flows.reload()
        for text in ("1005", "erik.dvorak@example.com"):
            await before.act({"type": "text", "text": text})
        await before.until(has_option("TEE-WHT-L"))
        await before.act({"type": "choose", "option": "TEE-WHT-L"})
        await before.until(has_option("M"))
        await before.act({"type": "choose", "option": "M"})
        await before.until(has_option("done"))
        after = await answer_to(server, "TEE-WHT-L", "M")
        assert "is in stock" in after["text"]
        await before.close()
    assert [r.url.path for r in api.requests] == ["/api/stock/TEE-WHT-L", "/v2/TEE-WHT-L"]


async def test_the_server_refuses_to_start_without_the_env_var(
    tmp_path: Path, api: StockApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STOCK_API_TOKEN", raising=False)
    runtime = Runtime(config(example_project(tmp_path, api), tmp_path))
    try:
        with pytest.raises(ValueError, match=r"not set: STOCK_API_TOKEN \(for stock.check\)"):
            await runtime.startup()  # what the app's lifespan runs before it serves
    finally:
        await runtime.shutdown()


def test_serve_refuses_to_start_without_the_env_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("STOCK_API_TOKEN", raising=False)
    assert cli_main(["serve", "--flows", str(EXAMPLE)]) == 1
    err = capsys.readouterr().err
    assert "need environment variables that are not set: STOCK_API_TOKEN (for stock.check)" in err


def test_the_examples_conversation_tests_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli([str(EXAMPLE / "tests")], flows_dir=str(EXAMPLE)) == 0, capsys.readouterr()


# -- requests: values are data, never url syntax or JSON syntax ------------------------------


def test_values_are_percent_encoded_into_the_url_and_typed_into_the_body(
    tmp_path: Path,
) -> None:
    (tmp_path / "flowengine.yaml").write_text(
        """
start: main
actions:
  shop.note:
    params: {sku: required, qty: required, note: optional}
    request:
      method: POST
      url: "https://shop.example/api/{{ sku }}/notes?q={{ note }}"
      headers: {X-Key: "k-${SHOP_KEY}", X-Sku: "{{ sku }}"}
      body: {sku: "{{ sku }}", qty: "{{ qty }}", text: "note: {{ note }}", fixed: [1, true]}
    answer: {keep: {}}
"""
    )
    (tmp_path / "main.yaml").write_text(
        "flow: main\nsteps:\n  - call: shop.note\n    with: {sku: x, qty: 1}\n"
        "    on_error: end\n    next: end\n"
    )
    result = load_project([tmp_path])
    assert result.ok and result.project is not None, result.render()
    action = result.project.actions["shop.note"]
    args = {"sku": "../a b/?#&=", "qty": 2, "note": 'say "hi" ${SHOP_KEY}'}
    request = build(action, args, {"SHOP_KEY": "the-key"})
    assert request.url == (
        "https://shop.example/api/..%2Fa%20b%2F%3F%23%26%3D/notes"
        "?q=say%20%22hi%22%20%24%7BSHOP_KEY%7D"
    )
    assert request.headers["X-Key"] == "k-the-key"
    assert request.headers["X-Sku"] == "../a b/?#&="
    assert request.content is not None
    assert json.loads(request.content) == {
        "sku": "../a b/?#&=",
        "qty": 2,  # a single {{ }} keeps its type
        "text": 'note: say "hi" ${SHOP_KEY}',  # a shopper's `${...}` is text, never looked up
        "fixed": [1, True],
    }
    assert encode("..") == "%2E%2E" and encode(".") == "%2E"
    assert encode(None) == "" and encode(True) == "true"


# -- static errors, each at its file:line:col ------------------------------------------------

CALLS = """\
flow: main
steps:
  - call: stock.chek
    with: {sku: A, size: M}
    on_error: end
  - call: stock.check
    with: {sku: A}
    on_error: end
  - call: stock.check
    with: {sku: A, size: M, colour: red}
    on_error: end
    next: end
"""


def _errors(tmp_path: Path, project: str, flow: str = CALLS) -> list[str]:
    (tmp_path / "flowengine.yaml").write_text(project)
    (tmp_path / "main.yaml").write_text(flow)
    result = load_project([tmp_path])
    return [
        f"{Path(d.file).name}:{d.position.line}:{d.position.column} {d.code} {d.message}"
        + (f" ({d.hint})" if d.hint else "")
        for d in result.errors
    ]


STOCK = """\
start: main
actions:
  stock.check:
    params: {sku: required, size: required}
    request:
      url: "https://shop.example/api/stock/{{ sku }}?size={{ size }}"
      headers: {Authorization: "Bearer ${STOCK_API_TOKEN}"}
    answer:
      not_found: [404]
      keep: {available: in_stock}
"""


def test_calls_of_a_declared_action_are_checked_like_built_in_ones(tmp_path: Path) -> None:
    assert _errors(tmp_path, STOCK) == [
        "main.yaml:3:11 E108 unknown action 'stock.chek' (did you mean 'stock.check'?)",
        "main.yaml:6:11 E115 action 'stock.check' needs the argument 'size' "
        "(add it under `with:`; stock.check takes size, sku)",
        "main.yaml:10:29 E115 action 'stock.check' takes no argument 'colour' "
        "(stock.check takes size, sku)",
    ]


def test_a_template_may_use_only_the_declared_params(tmp_path: Path) -> None:
    project = STOCK.replace("?size={{ size }}", "?size={{ sizes }}")
    assert _errors(tmp_path, project, CALLS.replace("stock.chek", "stock.check")) == [
        "flowengine.yaml:6:12 E110 the request of 'stock.check' uses 'sizes', which is not one "
        "of its params (did you mean 'size'?)",
        "main.yaml:6:11 E115 action 'stock.check' needs the argument 'size' "
        "(add it under `with:`; stock.check takes size, sku)",
        "main.yaml:10:29 E115 action 'stock.check' takes no argument 'colour' "
        "(stock.check takes size, sku)",
    ]


def test_a_built_in_name_and_a_name_without_a_namespace_are_refused(tmp_path: Path) -> None:
    project = (
        STOCK
        + '  orders.lookup:\n    request: {url: "https://shop.example/"}\n    answer: {keep: {}}\n'
        + '  stock:\n    request: {url: "https://shop.example/"}\n    answer: {keep: {}}\n'
    )
    errors = _errors(tmp_path, project, "flow: main\nsteps:\n  - say: hi\n    next: end\n")
    assert errors[0].startswith(
        "flowengine.yaml:11:3 E102 'orders.lookup' is already the name of a built-in action"
    )
    assert errors[1].startswith("flowengine.yaml:14:3 E012 action name 'stock' is not namespace")


def test_what_a_request_cannot_hold(tmp_path: Path) -> None:
    project = """\
start: main
actions:
  shop.bad:
    request:
      url: "https://{{ host }}/x"
      headers: {X-Key: "${lower_case}", Host: evil.example}
      body: {a: 1}
    answer: {ok: [200, 404], not_found: [404], keep: {}}
"""
    assert _errors(tmp_path, project, "flow: main\nsteps:\n  - say: hi\n    next: end\n") == [
        "flowengine.yaml:5:12 E012 a url starts with http:// or https:// and its host, written "
        "out (values go after the host: https://shop.example/api/stock/{{ sku }})",
        "flowengine.yaml:5:12 E110 the request of 'shop.bad' uses 'host', which is not one of "
        "its params (a request sees only the call's arguments: declare it under "
        "`actions.shop.bad.params`)",
        "flowengine.yaml:6:24 E012 '${lower_case}' is not an environment variable "
        "(write it as ${NAME}: capital letters, digits and _)",
        "flowengine.yaml:6:41 E012 the header 'Host' is flowengine's to set "
        "(the host comes from `url`, the length from `body`)",
        "flowengine.yaml:7:7 E012 a GET request has no body "
        "(send a body with POST, PUT or PATCH; with GET, put values in the url)",
        "flowengine.yaml:8:41 E012 status 404 is both ok and not_found (a status takes one exit)",
    ]


def test_a_schema_error_in_a_declaration_causes_no_follow_on_errors(tmp_path: Path) -> None:
    project = STOCK.replace("keep: {available: in_stock}", "keeep: {available: in_stock}")
    flow = "flow: main\nsteps:\n  - call: stock.check\n    with: {sku: A, size: M}\n"
    flow += "    on_error: end\n    next: end\n"
    errors = _errors(tmp_path, project, flow)
    assert [e.split(" ")[:2] for e in errors] == [
        ["flowengine.yaml:8:5", "E011"],
        ["flowengine.yaml:10:7", "E010"],
    ]


def test_the_example_validates_strictly() -> None:
    result = load_project([EXAMPLE])
    assert result.ok and not result.warnings, result.render()
    assert result.project is not None
    assert sorted(result.project.actions) == ["stock.check"]


def test_a_bare_env_name_and_an_exit_never_taken_are_caught(tmp_path: Path) -> None:
    """Found by a merchant: `Bearer $TOKEN` sent the letters `$TOKEN` (401, "system down"),
    and `on_not_found` on an action without `answer.not_found` was never taken (a 404 went to
    the error exit)."""
    project = """\
start: main
actions:
  gift.balance:
    params: {code: required}
    request:
      url: "https://shop.example/cards/{{ code }}"
      headers: {Authorization: "Bearer $GIFT_TOKEN"}
    answer: {keep: {balance: balance}}
"""
    flow = (
        "flow: main\nsteps:\n  - call: gift.balance\n    with: {code: A1}\n"
        "    on_not_found: end\n    on_error: end\n    next: end\n"
    )
    (tmp_path / "flowengine.yaml").write_text(project)
    (tmp_path / "main.yaml").write_text(flow)
    found = [
        (d.code, d.position.line, d.position.column, d.message, d.hint)
        for d in load_project([tmp_path]).diagnostics
    ]
    assert found[0][:4] == (
        "E012",
        7,
        32,  # the header's value
        "'$GIFT_TOKEN' would be sent as it is written",
    )
    assert "${GIFT_TOKEN}" in str(found[0][4])
    code, line, col, message, hint = found[1]
    assert (code, line, col) == ("W202", 5, 5)
    assert "never answers not_found" in message and "answer: {not_found: [404]}" in str(hint)
