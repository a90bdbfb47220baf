"""JSON text on the hot path: frames sent on sockets, states and events written to the stores.

orjson (C, UTF-8 out) instead of the standard library's encoder, which was a fifth of the CPU
of a click on Redis (py-spy, docs/benchmarks.md). The output is the same JSON: compact, text not
escaped to ASCII, non-string keys as strings; what orjson refuses (an integer wider than 64
bits, a lone surrogate) falls back to the standard encoder, so nothing that encoded before
fails now. A float is written in its shortest form either way (`1e20` where `json` writes
`1e+20`); NaN and infinities, which are not JSON, become `null` (`json` wrote `NaN`, which a
browser's JSON.parse refuses).

Text read back from the stores was written here and is valid JSON: it is parsed with orjson too.
Frames from clients are not: they are parsed by the standard library in server/protocol.py,
which repairs lone surrogates instead of refusing the frame.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> str:
    """`value` as compact JSON text."""
    try:
        return orjson.dumps(value, option=_OPTIONS).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def loads(text: str | bytes) -> Any:
    """JSON text this process or another instance wrote (ValueError if it is not JSON)."""
    return orjson.loads(text)
