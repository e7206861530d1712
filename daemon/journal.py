"""Append-only JSONL journal of transcript and error events, fsync'd before they are published.

Nothing is lost when no client listens: a late client asks for `history` since its last `seq`.
`seq` continues across daemon restarts because the journal remembers the last one. Lines are in
seq order, so both questions are answered from the end of the file: start-up and a reconnecting
client cost what they read, not the size of months of dictation.

Rotation: once the current file (`journal.jsonl`) reaches a size or age, it is renamed to
`journal.<last seq>.jsonl` (one atomic rename, then the directory is fsync'd) and a new current
file begins. Rotated files are read newest first after the current one, so history and `--since`
run across rotations with no gap and no duplicate: each event is in exactly one file, and the files
cover consecutive seq ranges. A crash between the rename and the next append leaves no current
file, which simply starts empty.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from .protocol import Event, ProtocolError, event_from_body

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Rotation:
    """When the current journal file is retired (0 = never), and how many retired files to keep."""

    max_bytes: int = 0
    max_age_s: float = 0.0  # age of the file's first event
    keep: int = 0  # rotated files kept, oldest deleted first; 0 = keep them all (no history lost)


class Journal:
    def __init__(
        self, path: Path, rotation: Rotation = Rotation(), clock: Callable[[], float] = time.time
    ):
        """`clock` gives epoch seconds: the time written on each line, against which age is measured."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rotation = rotation
        self._clock = clock
        self.last_seq = next((e.seq for e in self._newest_first()), 0)
        self._open()

    def append(self, event: Event) -> None:
        """Write and fsync one event; raises OSError if the disk refuses (the caller reports it)."""
        now = self._clock()
        if self._due(now):
            self.rotate()
        record = {"topic": event.topic, "time": round(now, 3), "event": event.body}
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.last_seq = max(self.last_seq, event.seq)
        if self._first_time is None:
            self._first_time = now
        if self.rotation.max_bytes and self._file.tell() >= self.rotation.max_bytes:
            self.rotate()

    def rotate(self) -> Path | None:
        """Retire the current file now (nothing happens when it is empty); the retired path."""
        if not self._file.tell():
            return None
        self._file.close()
        retired = self.path.with_name(f"{self.path.stem}.{self.last_seq}{self.path.suffix}")
        os.replace(self.path, retired)
        _fsync_dir(self.path.parent)
        self._open()
        log.info("journal: rotated %s to %s", self.path, retired.name)
        self._prune()
        return retired

    def files(self) -> list[Path]:
        """The journal's files, oldest first: rotated ones in seq order, then the current one."""
        rotated = []
        for candidate in self.path.parent.glob(f"{self.path.stem}.*{self.path.suffix}"):
            middle = candidate.name[len(self.path.stem) + 1 : -len(self.path.suffix) or None]
            if middle.isdigit():
                rotated.append((int(middle), candidate))
        return [p for _, p in sorted(rotated)] + [self.path]

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

    def _open(self) -> None:
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held for the daemon's life
        if self._file.tell() and not _ends_with_newline(self.path):
            self._file.write("\n")  # end a line torn by a crash, so the next one stands alone
        self._first_time = _first_time(self.path) if self._file.tell() else None

    def _due(self, now: float) -> bool:
        age = self.rotation.max_age_s
        return bool(age) and self._first_time is not None and now - self._first_time >= age

    def _prune(self) -> None:
        keep = self.rotation.keep
        rotated = self.files()[:-1]
        for old in rotated[: max(0, len(rotated) - keep)] if keep else []:
            old.unlink(missing_ok=True)
            log.info("journal: removed %s (journal.keep = %d)", old.name, keep)

    def _newest_first(self) -> Iterator[Event]:
        for path in reversed(self.files()):
            for number, line in _lines_backwards(path):
                try:
                    record = json.loads(line)
                    yield event_from_body(record["topic"], record["event"])
                except (ValueError, KeyError, TypeError, RecursionError, ProtocolError):
                    # a torn last line after a crash, or a hand-edited file: skip, don't die
                    log.warning(
                        "journal %s: skipping unreadable line %d from the end", path, number
                    )


def _first_time(path: Path) -> float | None:
    """When the file's first event was written (older lines carry no time: their file's mtime)."""
    with open(path, "rb") as f:
        first = f.readline()
    try:
        value = json.loads(first).get("time")
    except (ValueError, AttributeError):
        value = None
    return float(value) if isinstance(value, int | float) else path.stat().st_mtime


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX: the directory entry lives in the directory)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _lines_backwards(path: Path) -> Iterator[tuple[int, bytes]]:
    """(n-th line from the end, starting at 1; the line) for the non-empty lines of `path`."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below; a pruned file may vanish meanwhile
    except FileNotFoundError:
        return
    with f:
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
