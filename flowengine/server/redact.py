"""Keep shoppers' emails and order numbers, and anyone's tokens and passwords, out of logs,
whatever a log line was given.

`install()` puts `RedactingFilter` on our loggers, uvicorn's (`uvicorn.access` logs request
URLs, `uvicorn.error` logs WebSocket URLs) and their handlers. The filter never raises and
never drops a record: a record it cannot make sense of is replaced by a masked rendering of it.
"""

from __future__ import annotations

import logging
import numbers
import re
from collections.abc import Mapping
from typing import Any

# Bounded repeats: no input makes these backtrack more than a few hundred steps per position.
_AT = r"(?:@|%40)"  # an @, or one percent-encoded in a URL
_EMAIL = re.compile(
    r"[^\s@<>\"'&=?/:;,()\[\]]{1,64}" + _AT + r"[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}"
    r"\.[A-Za-z]{2,24}"
)
# Four or more digits, not part of a word, a decimal, a version, a time or a path; a dot or an
# underscore after them ends a sentence or a parameter, it does not hide them.
_NUMBER = re.compile(r"(?<![A-Za-z0-9.:/-])#?\d{4,}(?![A-Za-z0-9:/-]|\.\d)")
# A percent-encoded @ or dot in a URL, read as what it stands for before masking.
_ENCODED = re.compile(r"%(40|2[eE])")
# key=value and "key": "value" for secrets (query strings, JSON, headers), and Bearer tokens.
_SECRET = re.compile(
    r"""(?i)(\b(?:[a-z_]{0,24}token|user_hash|password|passwd|secret)["']?\s*[:=]\s*["']?)"""
    r"""[^\s&"',;}]+"""
)
_AUTH = re.compile(r"(?i)\b(bearer)(?:\s|%20|\+){1,8}[A-Za-z0-9._~+/=-]+")
# The password in a URL (redis://user:password@host).
_URL_PASSWORD = re.compile(r"(://[^/\s:@]{0,64}:)[^/\s@]{1,256}@")
# Query parameters that carry a shopper's email or order number, whatever their shape.
_PARAM = re.compile(r"(?i)([?&;](?:email|order|order_number|number|phone)=)[^&\s\"']+")

_LIMIT = 100_000  # characters of one message kept (a huge argument is cut, not copied on)


def redact(text: str) -> str:
    if len(text) > _LIMIT:
        text = text[:_LIMIT] + f"… ({len(text) - _LIMIT} more characters)"
    text = _SECRET.sub(r"\1<secret>", text)
    text = _AUTH.sub(r"\1 <secret>", text)
    text = _URL_PASSWORD.sub(r"\1<secret>@", text)
    text = _PARAM.sub(r"\1…", text)
    if "%" in text:
        text = _ENCODED.sub(lambda m: "@" if m[1] == "40" else ".", text)
    if "@" in text:
        text = _EMAIL.sub("<email>", text)
    return _NUMBER.sub("#…", text)


def _clean(value: Any) -> Any:
    """An argument as it may be logged: text masked; numbers kept (a `%d` needs a number; one
    long enough to be an order number is caught in the message); anything else, as masked
    text."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, numbers.Number):
        return value
    return redact(_text(value))


def _text(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


_ACCESS_FORMAT = '%s - "%s %s HTTP/%s" %d'  # uvicorn's access log line, five arguments


def _access_shaped(record: logging.LogRecord) -> bool:
    """An access log record: uvicorn's access formatter unpacks its five arguments (it used to
    fail on every request whose arguments this filter had replaced)."""
    return (
        isinstance(record.name, str)
        and record.name.startswith("uvicorn.access")
        and isinstance(record.args, tuple)
        and len(record.args) == 5
    )


def _frame_line(record: logging.LogRecord) -> bool:
    """The websockets library's debug line for each frame ("< TEXT '…' [n bytes]"): what a
    shopper or an agent sent or got, cut at 75 characters wherever that falls."""
    return (
        record.levelno <= logging.DEBUG
        and isinstance(record.msg, str)
        and record.msg[:2] in ("< ", "> ")
    )


def _is_server(record: logging.LogRecord) -> bool:
    return isinstance(record.name, str) and record.name.split(".")[0] == "uvicorn"


def _clean_args(args: Any) -> Any:
    if isinstance(args, tuple):
        return tuple(_clean(a) for a in args)
    if isinstance(args, Mapping):
        return {k: _clean(v) for k, v in args.items()}
    return args


def _text_args_change(args: Any) -> bool:
    if isinstance(args, Mapping):
        args = tuple(args.values())
    return isinstance(args, tuple) and any(isinstance(a, str) and redact(a) != a for a in args)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            self._mask(record)
        except Exception:  # whatever the record holds, it is logged, masked, and nothing raises
            self._fallback(record)
        return True

    def _mask(self, record: logging.LogRecord) -> None:
        if _frame_line(record):  # a shortened frame may cut a field's name from its value
            direction = str(record.msg)[0]
            record.msg, record.args = f"{direction} a WebSocket frame (not logged)", ()
            return
        try:
            message = record.getMessage()
        except Exception:  # a format that does not fit its arguments: log both, as text
            if _access_shaped(record):
                raise
            message = f"{_text(record.msg)} {_text(record.args)}"
            record.msg, record.args = redact(message), ()
        else:
            # An argument is masked on its own too: where it lands in the line may hide it
            # from the patterns (`HTTP/1003`), but not from the formatter that reads args.
            if redact(message) != message or _text_args_change(record.args):
                self._mask_args(record, message)
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)

    def _mask_args(self, record: logging.LogRecord, message: str) -> None:
        """Mask each argument and keep their shape: formatters may read `record.args`."""
        record.args = _clean_args(record.args)
        record.msg = redact(_text(record.msg))
        if self._clean(record):
            return
        if _access_shaped(record):  # the access log's own line, from the masked arguments
            record.msg = _ACCESS_FORMAT
            if not self._clean(record):
                raise ValueError("an access log record that will not mask")
            return
        # What is left spans arguments, or is in a number: the whole message, masked.
        record.msg, record.args = redact(message), ()

    @staticmethod
    def _clean(record: logging.LogRecord) -> bool:
        """Whether the record now formats, with nothing left to mask."""
        try:
            again = record.getMessage()
            if _is_server(record) and isinstance(record.args, tuple):
                # uvicorn's own numbers (a process id, a port) are not a shopper's: checked
                # with them as 0, they are kept (a client's path or header comes as text)
                zeros = tuple(0 if type(a) is int else a for a in record.args)
                again = str(record.msg) % zeros if zeros != record.args else again
        except Exception:
            return False
        return redact(again) == again

    @staticmethod
    def _fallback(record: logging.LogRecord) -> None:
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        if _access_shaped(record):  # keep the five fields uvicorn's access formatter unpacks
            status = record.args[4] if isinstance(record.args, tuple) else 0
            status = status if type(status) is int and 100 <= status < 600 else 0
            record.msg, record.args = _ACCESS_FORMAT, ("-", "-", "<masked>", "-", status)
            return
        try:
            text = redact(f"{_text(record.msg)} {_text(record.args)}")
        except Exception:
            text = "<a log line that could not be masked>"
        record.msg, record.args = text, ()


def _add(target: logging.Logger | logging.Handler, flt: logging.Filter) -> None:
    if not any(isinstance(f, RedactingFilter) for f in target.filters):
        target.addFilter(flt)


def install() -> None:
    """Filter our own loggers, uvicorn's (URLs may carry what a client sent) and the root's,
    and each of their handlers (a handler's filter sees what propagates to it too)."""
    flt = RedactingFilter()
    if not logging.getLogger().handlers:
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        logging.getLogger().addHandler(stream)
    for name in ("", "flowengine", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        _add(logger, flt)
        for handler in logger.handlers:
            _add(handler, flt)
    logging.getLogger("flowengine").setLevel(logging.INFO)
