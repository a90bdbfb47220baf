"""The server as a third-party client sees it: a real `flowengine serve` process, real sockets."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from flowengine.server.config import ServerConfig
from tests.app_server import AppServer
from tests.server_process import Client, ServerProcess


async def test_a_whole_conversation(server: ServerProcess) -> None:
    c = await Client.connect(server.ws_url)
    await c.until(lambda f: f.get("seq") == 1)
    assert c.last_message()["options"][0]["id"] == "track"
    ack = await c.act({"type": "choose", "option": "track"})
    assert ack["type"] == "ack" and ack["seq"] == 3
    assert c.last_message()["input"] == {"kind": "text", "var": "order_number"}
    await c.act({"type": "text", "text": "1003"})
    await c.act({"type": "text", "text": "chloe.pop@example.com"})
    # The order lookup runs after the ack; its answer arrives as more events.
    msg = await c.until(lambda f: f.get("type") == "message" and "on its way" in f.get("text", ""))
    assert "DHL" in msg["text"]
    await c.until(lambda f: f.get("type") == "message" and f.get("options"))
    await c.act({"type": "choose", "option": "done"})
    asked = await c.until(lambda f: f.get("type") == "message" and f.get("csat") == "yes_no")
    assert [o["id"] for o in asked["options"]] == ["yes", "no"]
    await c.act({"type": "choose", "option": "yes"})
    ended = await c.until(lambda f: f.get("type") == "ended")
    assert ended["resolution"] == "resolved"
    seqs = [e["seq"] for e in c.events]
    assert seqs == list(range(1, len(seqs) + 1))
    await c.close()


async def test_reload_resumes_with_exactly_the_missed_events(server: ServerProcess) -> None:
    a = await Client.connect(server.ws_url, locale="th")
    await a.until(lambda f: f.get("seq") == 1)
    await a.act({"type": "choose", "option": "sizes"})
    seen = a.events[-1]["seq"]
    await a.close()
    # Another tab of the same session moves on while the first is away.
    b = await Client.connect(server.ws_url, session=a.session, last_seq=0)
    await b.until(lambda f: f.get("seq") == seen)
    await b.act({"type": "choose", "option": "tops"})
    last = b.events[-1]["seq"]
    await b.close()
    again = await Client.connect(server.ws_url, session=a.session, last_seq=seen)
    assert again.frames[0]["resumed"] is True
    got = await again.until(lambda f: f.get("seq") == last)
    assert [e["seq"] for e in again.events] == list(range(seen + 1, last + 1))
    assert got["seq"] == last and "ภาษา" not in json.dumps(again.frames)  # nothing twice
    assert again.events[0]["from"] == "shopper"
    await again.close()


async def test_a_retried_action_is_applied_once(server: ServerProcess) -> None:
    c = await Client.connect(server.ws_url)
    await c.until(lambda f: f.get("seq") == 1)
    frame = {"type": "choose", "id": "same-id", "option": "shipping"}
    await c.send(frame)
    first = await c.next("ack")
    await c.send(frame)
    second = await c.next("ack")
    assert first["duplicate"] is False and second["duplicate"] is True
    assert second["seq"] == first["seq"]
    assert len([e for e in c.events if e.get("from") == "shopper"]) == 1
    await c.close()


async def test_two_tabs_clicking_at_once_lose_and_duplicate_nothing(server: ServerProcess) -> None:
    a = await Client.connect(server.ws_url)
    b = await Client.connect(server.ws_url, session=a.session)
    await a.until(lambda f: f.get("seq") == 1)
    await b.until(lambda f: f.get("seq") == 1)
    # Both tabs click the same menu at the same moment: one click wins, the other is refused
    # cleanly (the menu it clicked is gone), and both tabs see the same transcript.
    results = await asyncio.gather(
        a.act({"type": "choose", "option": "sizes"}),
        b.act({"type": "choose", "option": "shipping"}),
    )
    assert sorted(r["type"] for r in results) == ["ack", "error"]
    last = max(r.get("seq", 0) for r in results)
    await a.until(lambda f: f.get("seq") == last) if a.events[-1]["seq"] < last else None
    await b.until(lambda f: f.get("seq") == last) if b.events[-1]["seq"] < last else None
    assert [e["seq"] for e in a.events] == [e["seq"] for e in b.events] == list(range(1, last + 1))
    # Now many clicks from both tabs on a long-lived menu.
    await a.act({"type": "restart"})
    for c in (a, b):
        await c.until(lambda f: f.get("type") == "message" and f.get("options"))
    replies = await asyncio.gather(*[c.act({"type": "text", "text": "gibberish"}) for c in (a, b)])
    # Typed text at the menu is matched against the flows' intents: "gibberish" is a miss,
    # answered (acked) with "Sorry, I did not get that." and the menu again, on both tabs.
    assert [r["type"] for r in replies] == ["ack", "ack"]
    before = len(a.events)
    clicks = await asyncio.gather(
        *[c.act({"type": "choose", "option": o}) for c, o in ((a, "sizes"), (b, "shipping"))]
    )
    assert sorted(r["type"] for r in clicks) == ["ack", "error"]  # one menu, one click wins
    won = next(r for r in clicks if r["type"] == "ack")
    for c in (a, b):
        await c.until(lambda f, s=won["seq"]: f.get("seq") == s)
    assert [e["seq"] for e in a.events] == [e["seq"] for e in b.events]
    assert len(a.events) > before
    await a.close()
    await b.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_frame"),
        ('{"no": "type"}', "bad_frame"),
        ('{"type": "dance", "id": "x"}', "unknown_type"),
        ('{"type": "choose", "option": "track"}', "bad_id"),
        ('{"type": "choose", "id": "x", "option": 7}', "bad_option"),
        ('{"type": "choose", "id": "x", "option": "no-such-option"}', "unknown_option"),
        ('{"type": "hello", "session": null}', "already_hello"),
        (json.dumps({"type": "text", "id": "x", "text": "a" * 2001}), "text_too_long"),
        (json.dumps({"type": "text", "id": "x", "text": "a" * 17000}), "frame_too_large"),
    ],
)
async def test_bad_input_gets_an_error_and_the_session_stays_usable(
    server: ServerProcess, frame: str, code: str
) -> None:
    c = await Client.connect(server.ws_url)
    await c.until(lambda f: f.get("seq") == 1)
    await c.send(frame)
    error = await c.next("error")
    assert error["code"] == code and error["message"]
    ack = await c.act({"type": "choose", "option": "track"})
    assert ack["type"] == "ack" and ack["seq"] == 3
    await c.close()


async def test_binary_frames_and_hello_mistakes(server: ServerProcess) -> None:
    ws = await websockets.connect(server.ws_url)
    await ws.send(json.dumps({"type": "choose", "id": "x", "option": "track"}))
    assert json.loads(await ws.recv())["code"] == "hello_first"
    await ws.send(json.dumps({"type": "hello", "session": "../../etc/passwd"}))
    assert json.loads(await ws.recv())["code"] == "bad_session"
    await ws.send(b"\x00\x01")
    assert json.loads(await ws.recv())["code"] == "bad_frame"
    await ws.send(json.dumps({"type": "hello", "session": None, "last_seq": 0}))
    assert json.loads(await ws.recv())["type"] == "session"
    await ws.close()


async def test_an_unknown_or_expired_token_starts_fresh_with_a_notice(
    server: ServerProcess,
) -> None:
    c = await Client.connect(server.ws_url, session="expiredTokenThatIsLongEnough")
    hello = c.frames[0]
    assert hello["resumed"] is False and hello["expired"] is True
    assert hello["session"] != "expiredTokenThatIsLongEnough"
    first = await c.until(lambda f: f.get("seq") == 1)
    assert first["options"]
    await c.close()


async def test_a_claimed_verified_identity_is_ignored(server: ServerProcess) -> None:
    c = await Client.connect(
        server.ws_url,
        context={"shopper": {"email": "anna.novak@example.com", "verified": True, "name": "Anna"}},
    )
    await c.until(lambda f: f.get("seq") == 1)
    assert c.last_message()["text"].startswith("Hi Anna")
    await c.act({"type": "choose", "option": "track"})
    await c.act({"type": "text", "text": "1001"})
    assert c.last_message()["input"]["kind"] == "email"  # still asked: the claim proves nothing
    await c.close()


async def test_rate_limit(server: ServerProcess) -> None:
    """Past the burst, frames are dropped unread: the first drop of the second is answered,
    naming its id, the rest are not; the socket stays usable."""
    c = await Client.connect(server.ws_url)
    await c.until(lambda f: f.get("seq") == 1)
    for i in range(40):
        await c.send({"type": "ping", "id": str(i)})
    pongs = 0
    while (f := await c.recv())["type"] == "pong":
        pongs += 1
    # The burst is 20 frames, the hello was one of them.
    assert pongs == 19 and f["code"] == "rate_limited" and f["id"] == "19"
    with pytest.raises(TimeoutError):  # the other drops are not answered
        await asyncio.wait_for(c.recv(), 0.5)
    await asyncio.sleep(1.1)
    await c.send({"type": "ping"})
    assert (await c.recv())["type"] == "pong"
    await c.close()


async def test_origin_is_checked_before_the_socket_opens(server: ServerProcess) -> None:
    with pytest.raises(websockets.InvalidStatus) as exc:
        await websockets.connect(
            server.ws_url, additional_headers={"Origin": "https://evil.example"}
        )
    assert exc.value.response.status_code == 403
    ok = await Client.connect(server.ws_url, origin=f"http://127.0.0.1:{server.port}")
    await ok.close()
    ok = await Client.connect(server.ws_url, origin="http://localhost:3000")
    await ok.close()


async def test_allowed_origins_option() -> None:
    async with AppServer(ServerConfig(allowed_origins=("https://shop.example",))) as proc:
        ok = await Client.connect(proc.ws_url, origin="https://shop.example")
        await ok.close()
        with pytest.raises(websockets.InvalidStatus):
            await websockets.connect(
                proc.ws_url, additional_headers={"Origin": "http://localhost:1"}
            )


def test_health_readiness_metrics_and_demo_page(server: ServerProcess) -> None:
    assert server.get("/healthz") == (200, '{"status":"alive"}')
    status, body = server.get("/readyz")
    assert status == 200 and json.loads(body)["store"] == "memory"
    status, body = server.get("/metrics")
    assert status == 200
    for name in (
        "flowengine_open_sockets",
        "flowengine_clicks_total",
        "flowengine_step_seconds_bucket",
        "flowengine_store_errors_total",
    ):
        assert name in body
    status, body = server.get("/")
    assert status == 200 and "<script" in body and "/widget.js" in body


def test_broken_flows_are_never_served(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a.yaml").write_text("flow: a\nsteps:\n  - say: hi\n    next: nowhere\n")
    proc = ServerProcess(flows=tmp_path)
    with pytest.raises(RuntimeError, match="E104"):
        proc.start()


async def test_a_dead_order_backend_takes_the_error_exit_and_the_session_lives() -> None:
    from tests.redis_server import free_port

    config = ServerConfig(orders_api=f"http://127.0.0.1:{free_port()}/api")
    async with AppServer(config) as proc:
        c = await Client.connect(proc.ws_url)
        await c.until(lambda f: f.get("seq") == 1)
        await c.act({"type": "choose", "option": "track"})
        await c.act({"type": "text", "text": "1003"})
        await c.act({"type": "text", "text": "chloe.pop@example.com"})
        down = await c.until(lambda f: f.get("type") == "message" and f.get("options"))
        assert "can't reach our order system" in down["text"]
        assert [o["id"] for o in down["options"]] == ["retry", "person"]
        ack = await c.act({"type": "choose", "option": "person"})
        assert ack["type"] == "ack"
        await c.close()


async def test_idle_sessions_expire_and_come_back_fresh() -> None:
    now = [1_800_000_000.0]
    async with AppServer(ServerConfig(session_ttl=600), lambda: now[0]) as proc:
        c = await Client.connect(proc.ws_url)
        await c.until(lambda f: f.get("seq") == 1)
        await c.close()
        now[0] += 599  # idle, but not for long enough
        kept = await Client.connect(proc.ws_url, session=c.session, last_seq=1)
        assert kept.frames[0] == {
            "type": "session",
            "session": c.session,
            "resumed": True,
            "expired": False,
        }
        await kept.close()
        now[0] += 601  # idle past the TTL (a resume reads; only a change keeps it alive)
        again = await Client.connect(proc.ws_url, session=c.session, last_seq=1)
        assert again.frames[0]["expired"] is True and again.frames[0]["session"] != c.session
        first = await again.until(lambda f: f.get("seq") == 1)
        assert first["options"]
        await again.close()


async def test_identity_verification_by_hmac() -> None:
    from flowengine.server.identity import user_hash

    secret = "s3cret-shared-with-the-shop"
    async with AppServer(ServerConfig(identity_secret=secret)) as proc:
        for given, asked_for_email in (
            (user_hash(secret, "Anna.Novak@example.com"), False),
            ("0" * 64, True),
            (None, True),
        ):
            shopper = {"email": "anna.novak@example.com", "user_hash": given, "verified": True}
            c = await Client.connect(proc.ws_url, context={"shopper": shopper})
            await c.until(lambda f: f.get("seq") == 1)
            await c.act({"type": "choose", "option": "track"})
            await c.act({"type": "text", "text": "1001"})
            if asked_for_email:
                assert c.last_message()["input"]["kind"] == "email"
            else:
                await c.until(lambda f: "still cancel" in f.get("text", ""))
            await c.close()
