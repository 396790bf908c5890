"""Structured logging: one event per line, JSON when asked (or under systemd without a TTY), text on a terminal.

Call sites log an event name plus fields: ``log.info("drift.detected", env="prod", object="...")``.
Fields whose names look like credentials are masked here, as a last line of defence.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from typing import Any

_SECRET_KEY = re.compile(r"(token|password|passwd|secret|credential|authorization|private_key|api_key)", re.I)
_FIELDS = "driftd_fields"


class EventLogger:
    """A thin front over :mod:`logging` that carries fields instead of formatted messages."""

    def __init__(self, name: str) -> None:
        self._log = logging.getLogger(name)

    def _emit(self, level: int, event: str, fields: dict[str, Any], exc_info: bool = False) -> None:
        if self._log.isEnabledFor(level):
            self._log.log(level, event, extra={_FIELDS: fields}, exc_info=exc_info, stacklevel=3)

    def debug(self, event: str, **fields: Any) -> None:
        self._emit(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit(logging.ERROR, event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._emit(logging.ERROR, event, fields, exc_info=True)


def get_logger(name: str) -> EventLogger:
    return EventLogger(name)


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: ("***" if _SECRET_KEY.search(k) and v not in (None, "") else v) for k, v in fields.items()}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        out.update(_clean(getattr(record, _FIELDS, {})))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    _COLORS = {"DEBUG": "\033[2m", "INFO": "\033[36m", "WARNING": "\033[33m", "ERROR": "\033[31m"}

    def __init__(self, color: bool) -> None:
        super().__init__()
        self.color = color

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%H:%M:%S", time.localtime(record.created))
        level = record.levelname.lower()
        level = f"{self._COLORS.get(record.levelname, '')}{level:7}\033[0m" if self.color else f"{level:7}"
        fields = " ".join(f"{k}={_fmt(v)}" for k, v in _clean(getattr(record, _FIELDS, {})).items())
        line = f"{ts} {level} {record.getMessage()}" + (f"  {fields}" if fields else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _fmt(v: Any) -> str:
    s = str(v)
    return json.dumps(s) if (" " in s or not s) else s


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at emit time, so a replaced stderr (tests, embedding) never
    leaves the handler writing to a closed file."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(fmt: str = "auto", level: str = "info", stream: Any = None) -> None:
    """``auto``: text on a TTY, JSON otherwise (journald, pipes, containers)."""
    handler: logging.StreamHandler = logging.StreamHandler(stream) if stream else _StderrHandler()  # type: ignore[type-arg]
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "text" if stream.isatty() and not os.environ.get("JOURNAL_STREAM") else "json"
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(color=stream.isatty()))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Client libraries log request bodies at debug level; keep them quiet.
    for noisy in ("botocore", "aiobotocore", "kubernetes_asyncio", "dulwich", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # urllib3 (under dulwich's HTTP client) logs each retry with the request URL; driftd reports the failure itself.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
