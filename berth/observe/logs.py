"""Berth's own log lines (not the access log): level and format from the settings, on stderr.

JSON (the default): one object a line, {"time", "level", "logger", "message"} and "exc" with the
traceback when there is one, so a log pipeline reads them beside the access lines. Text: the classic
`time level logger: message`.
"""

from __future__ import annotations

import json
import logging
import sys
import time


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                       + f".{int(record.msecs):03d}Z",
               "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, separators=(",", ":"))


class OneLine(logging.Filter):
    """A library's expected failure in one line, its exception's type and text instead of a traceback:
    asyncpg's pool logs a traceback every time it cannot reconnect while PostgreSQL is down."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            e = record.exc_info[1]
            record.msg, record.args = f"{record.getMessage()} ({type(e).__name__}: {e})", None
            record.exc_info = record.exc_text = None
        return True


def configure(level: str, fmt: str) -> None:
    """The `berth` logger and its children: one stderr handler, replacing any from a previous call."""
    logger = logging.getLogger("berth")
    for h in list(logger.handlers):
        if getattr(h, "berth_own", False):
            logger.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.berth_own = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    lib = logging.getLogger("asyncpg")
    for h in list(lib.handlers):
        if getattr(h, "berth_own", False):
            lib.removeHandler(h)
    lib.addHandler(handler)
    lib.setLevel(logging.WARNING)
    lib.propagate = False
    if not any(isinstance(f, OneLine) for f in lib.filters):
        lib.addFilter(OneLine())
