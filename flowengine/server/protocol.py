"""The shopper wire protocol (docs/protocol.md): client frames in, checked; server frames out.

Every client frame is a JSON object with a `type`. Actions carry a client-chosen `id` so a retry
is applied once. Anything malformed becomes a `ProtocolError`, which the socket turns into an
error frame (`frames.error`); nothing is stored and the session stays usable. What the server
sends is built in `flowengine.frames`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..engine import model as m
from .identity import verify_shopper

MAX_ID = 64
MAX_OPTION = 100
MAX_TEXT = 2000
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_LOCALE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, frame_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.frame_id = frame_id


@dataclass(frozen=True)
class Hello:
    session: str | None
    last_seq: int
    locale: str
    context: dict[str, Any]
    batch: bool = False  # the client reads `batch` frames: an answer comes as one message


@dataclass(frozen=True)
class Action:
    id: str
    event: m.Event
    kind: str


def decode(raw: str) -> dict[str, Any]:
    """A frame as a dict, every string in it encodable text (see `_encodable`)."""
    try:
        frame = json.loads(raw)
    except (ValueError, RecursionError):
        raise ProtocolError("bad_json", "frames are JSON objects") from None
    if not isinstance(frame, dict):
        raise ProtocolError("bad_frame", "frames are JSON objects with a 'type'")
    if "\\u" in raw and _SURROGATE.search(raw):
        frame = _encodable(frame)
    if not isinstance(frame.get("type"), str):
        raise ProtocolError("bad_frame", "the frame has no 'type'")
    return frame


# A JSON escape of half a surrogate pair ("\udc80") decodes to a str that cannot be encoded as
# UTF-8: stored, it would break every replay of the session and every agent opening it. The
# edge replaces each with U+FFFD, once, for every field of every frame (a whole pair, such as
# an emoji, decodes to one character and is kept).
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]", re.ASCII)
_LONE = re.compile("[\ud800-\udfff]")


def _encodable(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_encodable(k): _encodable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encodable(v) for v in value]
    return value


def _flat(value: Any, limit: int = 32) -> dict[str, Any]:
    if not isinstance(value, dict):
        return {}
    out: dict[str, Any] = {}
    for k, v in list(value.items())[:limit]:
        if isinstance(v, str | int | float | bool) or v is None:
            out[str(k)[:64]] = v[:500] if isinstance(v, str) else v
    return out


def parse_hello(frame: dict[str, Any], identity_secret: str | None = None) -> Hello:
    if frame["type"] != "hello":
        raise ProtocolError("hello_first", "the first frame must be hello")
    session = frame.get("session")
    if session is not None and (not isinstance(session, str) or not _TOKEN.match(session)):
        raise ProtocolError("bad_session", "session must be null or a token from the server")
    last_seq = frame.get("last_seq", 0)
    if not isinstance(last_seq, int) or isinstance(last_seq, bool) or last_seq < 0:
        raise ProtocolError("bad_frame", "last_seq must be a whole number >= 0")
    locale = frame.get("locale") or ""
    if not isinstance(locale, str) or (locale and not _LOCALE.match(locale)):
        locale = ""
    given = frame.get("context")
    raw_context: dict[str, Any] = given if isinstance(given, dict) else {}
    shopper = _flat(raw_context.get("shopper"))
    # A shopper is only ever "verified" by the server checking `user_hash`; never by a claim.
    shopper = verify_shopper(shopper, shopper.get("user_hash"), identity_secret)
    context = {
        "page": _flat(raw_context.get("page")),
        "shopper": shopper,
        "context": _flat(raw_context.get("context")),
    }
    return Hello(session, last_seq, locale, context, batch=frame.get("batch") is True)


def _choose(frame: dict[str, Any], frame_id: str) -> m.Event:
    option = frame.get("option")
    if not isinstance(option, str) or not 1 <= len(option) <= MAX_OPTION:
        raise ProtocolError("bad_option", "choose needs an 'option' id", frame_id)
    return m.Choose(option)


def _text(frame: dict[str, Any], frame_id: str) -> m.Event:
    text = frame.get("text")
    if not isinstance(text, str):
        raise ProtocolError("bad_text", "text needs a 'text' string", frame_id)
    if len(text) > MAX_TEXT:
        raise ProtocolError(
            "text_too_long", f"messages are limited to {MAX_TEXT} characters", frame_id
        )
    return m.Text(text)


# The shopper's actions: frame type -> its engine event. Each carries a client-chosen `id`.
ACTIONS: dict[str, Callable[[dict[str, Any], str], m.Event]] = {
    "choose": _choose,
    "text": _text,
    "handoff": lambda _frame, _id: m.AskForPerson(),
    "restart": lambda _frame, _id: m.Restart(),
}


def frame_id(frame: dict[str, Any]) -> str | None:
    """The frame's `id`, when it has a usable one (to answer errors with)."""
    value = frame.get("id")
    return value if isinstance(value, str) and 1 <= len(value) <= MAX_ID else None


def parse_action(frame: dict[str, Any]) -> Action:
    kind = frame["type"]
    parse = ACTIONS.get(kind)
    if parse is None:
        raise ProtocolError("unknown_type", f"unknown frame type '{kind[:32]}'", frame_id(frame))
    action_id = frame_id(frame)
    if action_id is None:
        raise ProtocolError("bad_id", f"'{kind}' needs an 'id' of 1 to {MAX_ID} characters")
    return Action(action_id, parse(frame, action_id), kind)
