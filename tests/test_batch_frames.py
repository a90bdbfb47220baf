"""One message per answer (docs/protocol.md, "batch"): a client that says `"batch": true` in its
hello gets an action's events and its ack as one `batch` frame, and a resumed session's replay
as few frames as BATCH_MAX allows; a client that does not gets every frame on its own, as
before. Over real sockets to a running app, with the shipped flows."""

from __future__ import annotations

import json
from typing import Any

import websockets

from flowengine.frames import BATCH_MAX
from flowengine.server.config import ServerConfig
from tests.app_server import AppServer


async def _hello(url: str, *, batch: bool, session: str | None = None, last_seq: int = 0) -> Any:
    ws = await websockets.connect(url)
    hello: dict[str, Any] = {"type": "hello", "session": session, "last_seq": last_seq}
    if batch:
        hello["batch"] = True
    await ws.send(json.dumps(hello))
    return ws


async def _recv(ws: Any) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await ws.recv())
    return frame


def _flat(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for m in messages for f in (m["frames"] if m["type"] == "batch" else [m])]


async def test_an_answer_is_one_message_for_a_client_that_reads_batches() -> None:
    async with AppServer(ServerConfig()) as app:
        ws = await _hello(app.ws_url, batch=True)
        opening = await _recv(ws)  # the session and the greeting, together
        assert opening["type"] == "batch"
        first = opening["frames"]
        assert first[0]["type"] == "session" and [f["seq"] for f in first[1:]] == [1]
        await ws.send(json.dumps({"type": "choose", "id": "c1", "option": "sizes"}))
        answer = await _recv(ws)
        assert answer["type"] == "batch"
        inside = answer["frames"]
        assert [f["type"] for f in inside][-1] == "ack" and inside[-1]["id"] == "c1"
        seqs = [f["seq"] for f in inside[:-1]]
        assert seqs == list(range(2, 2 + len(seqs))) and len(seqs) >= 2
        assert inside[0]["from"] == "shopper"  # the echo of the click first
        assert inside[-1]["seq"] == seqs[-1]
        # An error is a frame of its own, as ever.
        await ws.send(json.dumps({"type": "choose", "id": "c2", "option": "nope"}))
        error = await _recv(ws)
        assert (error["type"], error["code"], error["id"]) == ("error", "unknown_option", "c2")
        # A resend of an applied action: only its ack (nothing new), so a plain frame.
        await ws.send(json.dumps({"type": "choose", "id": "c1", "option": "sizes"}))
        again = await _recv(ws)
        assert again["type"] == "ack" and again["duplicate"] is True
        await ws.close()


async def test_a_client_that_does_not_ask_gets_frame_by_frame_the_same_frames() -> None:
    async with AppServer(ServerConfig()) as app:
        batched, plain = await _hello(app.ws_url, batch=True), await _hello(app.ws_url, batch=False)
        got: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
        for ws, batch in ((batched, True), (plain, False)):
            got[batch].append(await _recv(ws))
            while not any(f.get("seq") == 1 for f in _flat(got[batch])):
                got[batch].append(await _recv(ws))
            await ws.send(json.dumps({"type": "choose", "id": "c1", "option": "shipping"}))
            while not any(f["type"] == "ack" for f in _flat(got[batch])):
                got[batch].append(await _recv(ws))
        assert all(m["type"] != "batch" for m in got[False])
        assert len(got[True]) == 2 and len(got[False]) > 4

        def shape(frames: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
            return [(f["type"], f.get("seq"), f.get("text"), f.get("id")) for f in frames]

        assert shape(_flat(got[True]))[1:] == shape(_flat(got[False]))[1:]  # not the session id
        for ws in (batched, plain):
            await ws.close()


async def test_a_long_replay_comes_in_batches_of_at_most_batch_max() -> None:
    async with AppServer(
        ServerConfig(socket_rate=1000, socket_burst=1000, ip_rate=10000, ip_burst=10000)
    ) as app:
        ws = await _hello(app.ws_url, batch=False)
        session = (await _recv(ws))["session"]
        clicks = ["sizes", "tops", "another"] + ["bottoms", "another", "shoes", "another"] * 16
        last = 0
        for i, option in enumerate(clicks):
            await ws.send(json.dumps({"type": "choose", "id": f"c{i}", "option": option}))
            while True:
                frame = await _recv(ws)
                if frame["type"] == "ack":
                    last = frame["seq"]
                    break
                assert frame["type"] != "error", frame
        await ws.close()
        assert last > 2 * BATCH_MAX
        reload = await _hello(app.ws_url, batch=True, session=session)
        messages = [await _recv(reload)]
        while not any(f.get("seq") == last for f in _flat(messages)):
            messages.append(await _recv(reload))
        assert all(m["type"] == "batch" and len(m["frames"]) <= BATCH_MAX for m in messages)
        replayed = [f["seq"] for f in _flat(messages) if "seq" in f]
        assert replayed == list(range(1, last + 1))  # every event once, in order
        assert _flat(messages)[0]["type"] == "session" and _flat(messages)[0]["resumed"]
        await reload.close()
