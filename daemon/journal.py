"""Append-only JSONL journal of transcript and error events, fsync'd before they are published.

Nothing is lost when no client listens: a late client asks for `history` since its last `seq`.
`seq` continues across daemon restarts because the journal remembers the last one. Lines are in
seq order, so both questions are answered from the end of the file: start-up and a reconnecting
client cost what they read, not the size of months of dictation.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Collection, Iterator
from pathlib import Path

from .protocol import Event, ProtocolError, event_from_body

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024


class Journal:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.last_seq = next((e.seq for e in self._newest_first()), 0)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held for the daemon's life
        if self._file.tell() and not _ends_with_newline(self.path):
            self._file.write("\n")  # end a line torn by a crash, so the next one stands alone

    def append(self, event: Event) -> None:
        """Write and fsync one event; raises OSError if the disk refuses (the caller reports it)."""
        line = json.dumps({"topic": event.topic, "event": event.body}, ensure_ascii=False)
        self._file.write(line + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.last_seq = max(self.last_seq, event.seq)

    def since(
        self, seq: int, limit: int | None = None, topics: Collection[str] | None = None
    ) -> tuple[list[Event], bool]:
        """Events with seq > `seq` (of `topics`, when given), oldest first: at most `limit`, and
        whether more follow them."""
        newer = []
        for event in self._newest_first():
            if event.seq <= seq:
                break
            if topics is None or event.topic in topics:
                newer.append(event)
        newer.reverse()
        if limit is not None and len(newer) > limit:
            return newer[:limit], True
        return newer, False

    def close(self) -> None:
        self._file.close()

    def _newest_first(self) -> Iterator[Event]:
        for number, line in _lines_backwards(self.path):
            try:
                record = json.loads(line)
                yield event_from_body(record["topic"], record["event"])
            except (ValueError, KeyError, TypeError, RecursionError, ProtocolError):
                # a torn last line after a crash, or a hand-edited file: skip, don't die
                log.warning(
                    "journal %s: skipping unreadable line %d from the end", self.path, number
                )


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _lines_backwards(path: Path) -> Iterator[tuple[int, bytes]]:
    """(n-th line from the end, starting at 1; the line) for the non-empty lines of `path`."""
    if not path.exists():
        return
    with open(path, "rb") as f:
        position = f.seek(0, os.SEEK_END)
        tail = b""
        number = 0
        while position > 0:
            step = min(_CHUNK, position)
            position -= step
            f.seek(position)
            lines = (f.read(step) + tail).split(b"\n")
            tail = lines.pop(0)  # may continue in the previous chunk
            for line in reversed(lines):
                if line.strip():
                    number += 1
                    yield number, line
        if tail.strip():
            yield number + 1, tail
