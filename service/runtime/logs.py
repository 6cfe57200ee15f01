"""Logging set-up: human-readable text, or one JSON object per line for a log pipeline.

``--log-format json`` writes ``{"time", "level", "logger", "message"}`` plus ``request_id``,
``operation`` and ``worker`` where they apply: the worker binds them (:func:`bind`) around each
run, so every line logged while a request runs carries them (:class:`ContextFilter` copies
them onto the record), and a call may also pass them with ``extra=``. ``exception`` holds
the traceback of a logged exception.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal

import orjson

FIELDS = ("request_id", "operation", "worker", "member")
# Never mutated: bind() sets a new mapping, so tasks that copied the context keep theirs.
_EMPTY: Mapping[str, str] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "log_fields", default=_EMPTY
)

LogFormat = Literal["text", "json"]


def bind(**fields: str) -> contextvars.Token[Mapping[str, str]]:
    """Add fields to every line logged in this context (and the tasks it starts)."""
    return _context.set({**_context.get(), **fields})


def unbind(token: contextvars.Token[Mapping[str, str]]) -> None:
    """Undo a :func:`bind`."""
    _context.reset(token)


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record as it is logged (formatting may come later)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            record.__dict__.setdefault(name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                doc[name] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            doc["stack"] = record.stack_info
        return orjson.dumps(doc, default=str).decode()


def configure(level: str, fmt: LogFormat = "text", member: str | None = None) -> None:
    """Set up the root logger for a process (``member``: its name in a process group)."""
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
        if member:
            bind(member=member)
    else:
        prefix = f"{member} " if member else ""
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s")
        )
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
