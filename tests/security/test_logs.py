"""What a log may not keep: shoppers' emails and order numbers, and tokens, wherever they come
from (a WebSocket URL, an access-log URL, an order API's failure), and the masking filter never
raises, whatever a log line was given. A real `flowengine serve`; hostile records by the
thousand for the filter itself."""

from __future__ import annotations

import http.server
import logging
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from uvicorn.logging import AccessFormatter, DefaultFormatter

from flowengine.server.redact import RedactingFilter, redact
from tests.redis_server import free_port
from tests.server_process import Client, ServerProcess

EMAIL, ORDER, TOKEN = "a@b.cz", "100234", "s3cr3t-t0ken"


class _Down(http.server.BaseHTTPRequestHandler):
    """An order API that fails every call (its failure is what gets logged)."""

    def do_GET(self) -> None:
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def order_api() -> Iterator[str]:
    api = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Down)
    thread = threading.Thread(target=api.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{api.server_address[1]}/api"
    api.shutdown()
    api.server_close()


async def test_a_real_server_logs_no_email_order_number_or_token(order_api: str) -> None:
    server = ServerProcess("--log-level", "info", "--orders-api", order_api).start()
    try:
        url = f"{server.ws_url}?email={EMAIL}&order={ORDER}&token={TOKEN}"
        c = await Client.connect(url)
        await c.until(lambda f: f.get("seq") == 1)
        await c.act({"type": "choose", "option": "track"})
        await c.act({"type": "text", "text": ORDER})
        await c.act({"type": "text", "text": EMAIL})
        down = await c.until(lambda f: f.get("type") == "message" and f.get("options"))
        assert "can't reach our order system" in down["text"]
        await c.close()
        assert server.get("/healthz?x=" + "7" * 5000)[0] == 200
        assert server.get(f"/healthz?e=anna%40example.com&access_token={TOKEN}")[0] == 200
        bearer = f"/healthz?q=Bearer%20{TOKEN}&user_hash=abcdef&password=hunter2"
        assert server.get(bearer)[0] == 200
        # every line is there, masked
        await server.logged('"WebSocket /ws?email=…&order=…&token=<secret>" [accepted]')
        await server.logged("order API answered 500 on GET /orders/{number}")
        await server.logged('"GET /healthz?x=#… HTTP/1.1" 200')
        await server.logged('"GET /healthz?e=<email>&access_token=<secret> HTTP/1.1" 200')
        await server.logged("q=Bearer <secret>&user_hash=<secret>&password=<secret> HTTP/1.1")
    finally:
        server.stop()
    log = server.log
    for secret in (EMAIL, ORDER, TOKEN, "anna", "hunter2", "abcdef", "7777"):
        assert secret not in log, secret
    assert "Logging error" not in log and "Traceback" not in log
    assert re.search(r"Started server process \[\d+\]", log)  # uvicorn's own numbers stay


def test_what_is_masked() -> None:
    cases = {
        "order #1003 for chloe.pop@example.com": "order #… for <email>",
        "/ws?email=anna%40example.com&order=A-77": "/ws?email=…&order=…",
        "GET /x?token=abc&access_token=def&user_hash=0f&password=pw": (
            "GET /x?token=<secret>&access_token=<secret>&user_hash=<secret>&password=<secret>"
        ),
        'Authorization: Bearer eyJhbGciOi.x-y_z and {"password": "pw"}': (
            'Authorization: Bearer <secret> and {"password": "<secret>"}'
        ),
        "x=" + "9" * 5000: "x=#…",
        "on Redis at redis://:pa55@10.0.0.7:6379/0": "on Redis at redis://:<secret>@10.0.0.7:6379/0",
        "2026-11-22 10:00:01, 127.0.0.1:8000, v1.2345, 0.25 s": (
            "2026-11-22 10:00:01, 127.0.0.1:8000, v1.2345, 0.25 s"
        ),
        # A dot or an underscore after the digits, a dot encoded in an email:
        "/ws?q=100345.": "/ws?q=#….",
        "?n=100351_": "?n=#…_",
        "/ws?e=anna%2Eenc%40example%2Ecom": "/ws?e=<email>",
    }
    for given_text, expected in cases.items():
        assert redact(given_text) == expected


def test_masking_takes_linear_time_on_what_would_make_a_regex_backtrack() -> None:
    for hostile in ("a" * 200_000, "a" * 100_000 + "@", "1" * 200_000 + "a", "x@" * 50_000):
        assert len(redact(hostile)) < 100_100  # a huge message is cut, and this returns


class _Hostile:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    __repr__ = __str__


def _record(name: str, msg: Any, args: Any, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError(f"order {ORDER} of {EMAIL}")
        except ValueError as e:
            exc_info = (type(e), e, e.__traceback__)
    record = logging.LogRecord(name, logging.INFO, __file__, 1, msg, None, exc_info)
    record.args = args  # as given, whatever it is (LogRecord would unwrap a lone mapping)
    return record


_text = st.one_of(
    st.text(max_size=300),
    st.sampled_from([EMAIL, ORDER, f"order={ORDER}", f"token={TOKEN}", "%s", "%d", "%(x)s"]),
    st.builds(lambda n: "4" * n, st.integers(0, 20_000)),
)
_values = st.one_of(
    _text,
    st.integers(),
    st.floats(),
    st.none(),
    st.binary(max_size=50),
    st.builds(_Hostile),
    st.lists(_text, max_size=3),
)
_args = st.one_of(
    st.none(),
    st.tuples(),
    st.lists(_values, max_size=6).map(tuple),
    st.dictionaries(st.text(max_size=5), _values, max_size=3),
    _values,
)


@settings(max_examples=400, deadline=None)
@given(
    name=st.sampled_from(["flowengine.actions", "uvicorn.error", "uvicorn.access", "x"]),
    msg=st.one_of(_text, st.builds(_Hostile), st.integers(), st.none()),
    args=_args,
    exc=st.booleans(),
)
def test_the_filter_never_raises_and_what_it_passes_formats(
    name: str, msg: Any, args: Any, exc: bool
) -> None:
    record = _record(name, msg, args, exc)
    assert RedactingFilter().filter(record) is True
    formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    out = formatter.format(record)  # no "--- Logging error ---": nothing here raises
    assert EMAIL not in out


@settings(max_examples=300, deadline=None)
@given(
    client=_text,
    method=_text,
    path=_text,
    version=_text,
    status=st.integers(100, 599),
)
def test_the_access_log_keeps_its_five_fields_and_loses_the_secrets(
    client: str, method: str, path: str, version: str, status: int
) -> None:
    """uvicorn's access formatter unpacks `record.args` into five fields: the filter used to
    replace them with None (a logging error on every request it masked)."""
    args = (client, method, path, version, status)
    record = _record("uvicorn.access", '%s - "%s %s HTTP/%s" %d', args)
    assert RedactingFilter().filter(record) is True
    assert isinstance(record.args, tuple) and len(record.args) == 5
    out = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s').format(record)
    assert EMAIL not in out and ORDER not in out and TOKEN not in out
    assert str(status) in out


def test_an_error_with_a_traceback_is_masked_in_the_traceback_too() -> None:
    record = _record("uvicorn.error", "Exception in ASGI application\n", (), exc=True)
    RedactingFilter().filter(record)
    out = DefaultFormatter("%(levelprefix)s %(message)s").format(record)
    assert "Traceback" in out and "ValueError: order #… of <email>" in out


def test_websocket_frames_are_not_logged_even_at_debug() -> None:
    """The websockets library logs each frame at debug, cut at 75 characters: the cut fell
    between a field's name (`token`) and its value, which then went out in clear."""
    record = _record("uvicorn.error", "< %s", ('TEXT \'{"context": {"x": "SECRET...\' [90 bytes]',))
    record.levelno, record.levelname = logging.DEBUG, "DEBUG"
    RedactingFilter().filter(record)
    assert record.getMessage() == "< a WebSocket frame (not logged)"
