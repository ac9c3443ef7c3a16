"""Log output for people (text) or for log collectors (JSON, one object per line).

``--log-format json`` makes every record one JSON object on its own line: ``ts`` (UTC, ISO 8601 with
milliseconds), ``level``, ``logger``, ``message``, any ``extra=`` fields the code attached, and
``exception`` when there is one. journald, Loki, Elastic and Splunk read it without a parsing rule.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any

FORMATS = ("text", "json")

#: The attributes every LogRecord has; anything else on a record came from ``extra=`` and is emitted.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

#: The format chosen on the command line (``seam --log-format``), for commands that set up logging later.
chosen = "text"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
        out: dict[str, Any] = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def json_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    return handler


def use(fmt: str, level: int = logging.INFO) -> None:
    """Make ``fmt`` the process's log format now (``logging.basicConfig`` calls made later keep it)."""
    global chosen
    if fmt not in FORMATS:
        raise ValueError(f"--log-format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    chosen = fmt
    if fmt == "json":
        root = logging.getLogger()
        root.handlers.clear()
        root.addHandler(json_handler())
        root.setLevel(level)
