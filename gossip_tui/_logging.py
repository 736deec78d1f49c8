"""How a headless node logs: the level, and text or JSON lines (one object a line, for a
log shipper). Standard library only, so that the settings code can validate both."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "JsonFormatter",
    "configure_logging",
    "parse_log_format",
    "parse_log_level",
]

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _choice(value: object, choices: tuple[str, ...], what: str) -> str:
    if isinstance(value, str) and value.strip().lower() in choices:
        return value.strip().lower()
    raise ValueError(f"expected a {what} ({', '.join(choices)}), got {value!r}")


def parse_log_level(value: object) -> str:
    return _choice(value, LOG_LEVELS, "log level")


def parse_log_format(value: object) -> str:
    return _choice(value, LOG_FORMATS, "log format")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: time (UTC, ISO 8601), level, logger,
    message, and the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        import datetime  # here: most nodes log text, and a node's start is all imports
        import json

        stamp = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        line: dict[str, object] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        # ensure_ascii: a line stays one line and plain ASCII whatever the message holds.
        return json.dumps(line, ensure_ascii=True)


def configure_logging(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send every record at ``level`` or above to ``stream`` (stderr), replacing any
    handler set before."""
    handler = logging.StreamHandler(stream or sys.stderr)
    formatter = (
        JsonFormatter() if parse_log_format(fmt) == "json" else logging.Formatter(_TEXT_FORMAT)
    )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(parse_log_level(level).upper())
