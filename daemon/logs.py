"""Log handlers, installed only by the CLI: human-readable by default, JSON lines with --log-json.

Messages carry text from outside (transcripts, a remote server's words), so both formatters
escape its control characters: a transcript cannot colour the terminal, forge a log line with a
newline, or reverse what a line reads (U+202E). Tracebacks keep their own line breaks.
"""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType

from .protocol import escape_controls, json_line

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
_COLORS = {"DEBUG": "\033[2m", "WARNING": "\033[33m", "ERROR": "\033[31m", "CRITICAL": "\033[31;1m"}


def _escape_lines(text: str) -> str:
    """A traceback's lines kept, the controls inside each escaped."""
    return "\n".join(escape_controls(line) for line in text.split("\n"))


class HumanFormatter(logging.Formatter):
    def __init__(self, color: bool):
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        self.color = color  # only on a terminal; launchd and systemd journals get plain text

    def formatMessage(self, record: logging.LogRecord) -> str:
        safe = logging.makeLogRecord(record.__dict__)  # the record itself goes on to other handlers
        safe.message = escape_controls(record.message)
        return super().formatMessage(safe)

    def formatException(self, ei: ExcInfo) -> str:
        return _escape_lines(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _escape_lines(super().formatStack(stack_info))

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        code = _COLORS.get(record.levelname) if self.color else None
        return f"{code}{text}\033[0m" if code else text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": round(record.created, 3),
            "iso": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json_line(entry)  # JSON escapes C0; json_line also C1, DEL and bidi


def setup_logging(level: str = "info", json_lines: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else HumanFormatter(sys.stderr.isatty()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("faster_whisper", "httpx", "urllib3", "coremltools"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
