"""Append-only JSONL journal of transcript and error events, fsync'd before they are published.

Nothing is lost when no client listens: a late client asks for `history` since its last `seq`.
`seq` continues across daemon restarts because the journal remembers the last one.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from .protocol import Event, ProtocolError, event_from_body

log = logging.getLogger(__name__)


class Journal:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.last_seq = self._read_last_seq()
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held for the daemon's life

    def append(self, event: Event) -> None:
        """Write and fsync one event; raises OSError if the disk refuses (the caller reports it)."""
        line = json.dumps({"topic": event.topic, "event": event.body}, ensure_ascii=False)
        self._file.write(line + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.last_seq = max(self.last_seq, event.seq)

    def since(self, seq: int, limit: int | None = None) -> list[Event]:
        """Events with seq > `seq`, oldest first (the newest `limit` of them if limited)."""
        events = [e for e in self._read_all() if e.seq > seq]
        return events[-limit:] if limit else events

    def close(self) -> None:
        self._file.close()

    def _read_all(self) -> Iterator[Event]:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    yield event_from_body(record["topic"], record["event"])
                except (ValueError, KeyError, TypeError, ProtocolError):
                    # a torn last line after a crash, or a hand-edited file: skip, don't die
                    log.warning("journal %s: skipping unreadable line %d", self.path, number)

    def _read_last_seq(self) -> int:
        last = 0
        for event in self._read_all():
            last = max(last, event.seq)
        return last
