"""Keep shoppers' emails and order numbers out of logs, whatever a log line was given."""

from __future__ import annotations

import logging
import re

_EMAIL = re.compile(r"[^\s@<>\"']+@[^\s@<>\"']+\.[A-Za-z]{2,}")
_NUMBER = re.compile(r"(?<![\w.:/-])#?\d{4,}(?![\w.:/-])")


def redact(text: str) -> str:
    return _NUMBER.sub("#…", _EMAIL.sub("<email>", text))


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install() -> None:
    """Filter our own loggers and the access log (request paths may carry what a client sent)."""
    flt = RedactingFilter()
    for name in ("flowengine", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.addFilter(flt)
        for handler in logger.handlers:
            handler.addFilter(flt)
    if not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        handler.addFilter(flt)
        logging.getLogger().addHandler(handler)
    logging.getLogger("flowengine").setLevel(logging.INFO)
