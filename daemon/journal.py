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

Reading costs what is asked, not the journal's size: `last_seq` reads backwards from the end of
the current file; `since` skips rotated files by the seq in their names, finds its start in a file
by bisection (lines are in seq order) and stops after `limit` events. Lines are read in chunks
joined once, and a line over MAX_LINE_BYTES (one event is a few KB) is skipped with one warning
naming its file and offset, so a damaged file cannot make start-up or `history` slow or large.

Privacy: the journal and its directory are owner-only whatever the umask (see private_files.py),
and permissions left by an earlier version are tightened at start.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from . import paths
from .private_files import fsync_dir, open_private, private_dir, tighten
from .protocol import JOURNALED_TOPICS, Event, ProtocolError, event_from_body

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_BISECT_UNTIL = 4096  # bytes left between the bounds when bisection hands over to reading
#: the longest line read: one event (a transcript of at most 35 s of speech is a few KB)
MAX_LINE_BYTES = 1 << 20
#: saved audio of failed utterances lives beside the journal, in JOURNAL_STEM.failed/ (named
#: after the journal, since a custom journal.path may share a folder such as ~/Documents)
FAILED_AUDIO_SUFFIX = ".failed"
#: where earlier versions saved it (the data dir): still made private at start
LEGACY_AUDIO_DIR = "failed"

OnOversized = Callable[[Path, int, int], None]  # (file, offset, length) of a skipped line


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
        private_dir(self.path.parent)
        self.rotation = rotation
        self._clock = clock
        self._warned: set[tuple[Path, int]] = set()  # oversized lines already reported
        self._tighten_earlier_files()
        self.last_seq = self._read_last_seq()
        self._open()

    @property
    def audio_dir(self) -> Path:
        """Where the audio of utterances the engine failed on is kept: beside the journal."""
        return self.path.parent / f"{self.path.stem}{FAILED_AUDIO_SUFFIX}"

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
        self._open()  # creates the new current file and fsyncs the directory: both entries durable
        log.info("journal: rotated %s to %s", self.path, retired.name)
        self._prune()
        return retired

    def files(self) -> list[Path]:
        """The journal's files, oldest first: rotated ones in seq order, then the current one."""
        return [p for _, p in self._rotated()] + [self.path]

    def since(
        self, seq: int, limit: int | None = None, topics: Collection[str] | None = None
    ) -> tuple[list[Event], bool]:
        """Events with seq > `seq` (of `topics`, when given), oldest first: at most `limit`, and
        whether more follow them. Reading stops at the first event past `limit`."""
        wanted = None if topics is None else frozenset(topics)
        if wanted is not None and not wanted.intersection(JOURNALED_TOPICS):
            return [], False  # only live topics asked for: none of them is in here to scan for
        found: list[Event] = []
        for event in self._events_after(seq):
            if wanted is not None and event.topic not in wanted:
                continue
            if limit is not None and len(found) >= limit:
                return found, True
            found.append(event)
        return found, False

    def close(self) -> None:
        self._file.close()

    def _open(self) -> None:
        fd, created = open_private(self.path, os.O_WRONLY | os.O_APPEND)
        self._file = os.fdopen(fd, "a", encoding="utf-8")  # held for the daemon's life
        if not created and self._file.tell() and not _ends_with_newline(self.path):
            self._file.write("\n")  # end a line torn by a crash, so the next one stands alone
        self._first_time = _first_time(self.path) if self._file.tell() else None

    def _due(self, now: float) -> bool:
        age = self.rotation.max_age_s
        return bool(age) and self._first_time is not None and now - self._first_time >= age

    def _prune(self) -> None:
        keep = self.rotation.keep
        rotated = self.files()[:-1]
        removed = False
        for old in rotated[: max(0, len(rotated) - keep)] if keep else []:
            old.unlink(missing_ok=True)
            removed = True
            log.info("journal: removed %s (journal.keep = %d)", old.name, keep)
        if removed:
            fsync_dir(self.path.parent)

    def _rotated(self) -> list[tuple[int, Path]]:
        """(last seq, path) of the rotated files, in seq order."""
        rotated = []
        for candidate in self.path.parent.glob(f"{self.path.stem}.*{self.path.suffix}"):
            middle = candidate.name[len(self.path.stem) + 1 : -len(self.path.suffix) or None]
            if middle.isdigit():
                rotated.append((int(middle), candidate))
        return sorted(rotated)

    def _tighten_earlier_files(self) -> None:
        """Earlier versions made the journal and saved audio world-readable (umask 022): make
        what is ours owner-only, once, and say so."""
        ours: list[Path] = [*self.files()]
        audio_dirs = [self.audio_dir]
        if self.path.parent == paths.data_dir():  # where earlier versions saved audio
            audio_dirs.append(self.path.parent / LEGACY_AUDIO_DIR)
        for audio in audio_dirs:
            if audio.is_dir():
                ours += [audio, *sorted(audio.glob("*.wav"))]
        if self.path.parent == paths.data_dir() or _only_ours(self.path):
            ours.append(self.path.parent)
        tightened = [p for p in ours if tighten(p)]
        if tightened:
            log.warning(
                "journal: %d of its files or directories (e.g. %s) were readable by other "
                "accounts; made them owner-only",
                len(tightened),
                tightened[0],
            )

    def _read_last_seq(self) -> int:
        for path in reversed(self.files()):
            for number, line in _lines_backwards(path, self._oversized):
                event = self._parse(path, line, f"line {number} from the end")
                if event is not None:
                    return event.seq
        return 0

    def _events_after(self, seq: int) -> Iterator[Event]:
        """Every readable event with seq > `seq`, oldest first, reading only from where it starts."""
        rotated = [path for last, path in self._rotated() if last > seq]  # the rest: all older
        first = True
        for path in [*rotated, self.path]:
            try:
                f = open(path, "rb")  # noqa: SIM115 - closed below; a pruned file may vanish
            except FileNotFoundError:
                continue
            with f:
                start = _bisect(f, seq) if first else 0
                first = False
                for offset, line in _lines_forward(f, start, path, self._oversized):
                    event = self._parse(path, line, f"line at byte {offset}")
                    if event is not None and event.seq > seq:
                        yield event

    def _parse(self, path: Path, line: bytes, where: str) -> Event | None:
        try:
            record = json.loads(line)
            return event_from_body(record["topic"], record["event"])
        except (ValueError, KeyError, TypeError, RecursionError, ProtocolError):
            # a torn last line after a crash, or a hand-edited file: skip, don't die
            log.warning("journal %s: skipping unreadable %s", path, where)
            return None

    def _oversized(self, path: Path, offset: int, length: int) -> None:
        if (path, offset) in self._warned:
            return
        self._warned.add((path, offset))
        log.warning(
            "journal %s: skipping a line of %d bytes at byte %d (one event is at most %d bytes; "
            "the file was damaged or edited by hand)",
            path,
            length,
            offset,
            MAX_LINE_BYTES,
        )


def _only_ours(journal: Path) -> bool:
    """Whether the journal's directory holds nothing but the journal's files (then it is ours to
    tighten; a directory the user keeps other things in keeps its mode: its files are private)."""
    stem, suffix = journal.stem, journal.suffix
    with os.scandir(journal.parent) as entries:
        return all(
            e.name in (f"{stem}{FAILED_AUDIO_SUFFIX}", LEGACY_AUDIO_DIR)
            or (e.name.startswith(stem) and e.name.endswith(suffix))
            for e in entries
        )


def _first_time(path: Path) -> float | None:
    """When the file's first event was written (older lines carry no time: their file's mtime)."""
    with open(path, "rb") as f:
        first = f.readline(MAX_LINE_BYTES + 1)
    try:
        value = json.loads(first).get("time")
    except (ValueError, AttributeError, RecursionError):
        value = None
    return float(value) if isinstance(value, int | float) else path.stat().st_mtime


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


class _Line:
    """The pieces of one line being read, joined once at its end; past MAX_LINE_BYTES only its
    length is kept (the line will be skipped)."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.length = 0

    def add(self, piece: bytes) -> None:
        self.length += len(piece)
        if self.length <= MAX_LINE_BYTES:
            self.pieces.append(piece)
        else:
            self.pieces.clear()

    def take(self, backwards: bool = False) -> bytes | None:
        """The whole line (None when it was too long), and start the next one."""
        pieces, oversized = self.pieces, self.length > MAX_LINE_BYTES
        self.pieces, self.length = [], 0
        if oversized:
            return None
        return b"".join(reversed(pieces) if backwards else pieces)


def _lines_backwards(path: Path, oversized: OnOversized) -> Iterator[tuple[int, bytes]]:
    """(n-th line from the end, starting at 1; the line) for the non-empty lines of `path`."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below; a pruned file may vanish meanwhile
    except FileNotFoundError:
        return
    with f:
        position = f.seek(0, os.SEEK_END)
        line, number = _Line(), 0
        while position > 0:
            step = min(_CHUNK, position)
            position -= step
            f.seek(position)
            pieces = f.read(step).split(b"\n")
            end = position + step  # where the piece being looked at ends
            for i in range(len(pieces) - 1, -1, -1):
                line.add(pieces[i])
                end -= len(pieces[i])
                if i == 0:
                    break  # the line goes on in the previous chunk (or starts the file)
                length = line.length
                text = line.take(backwards=True)
                if text is None:
                    oversized(path, end, length)
                elif text.strip():
                    number += 1
                    yield number, text
                end -= 1  # the newline
        length = line.length
        text = line.take(backwards=True)
        if text is None:
            oversized(path, 0, length)
        elif text.strip():
            yield number + 1, text


def _lines_forward(
    f: BinaryIO, start: int, path: Path, oversized: OnOversized
) -> Iterator[tuple[int, bytes]]:
    """(offset, line) for the non-empty lines of `f` from `start` (a line's start) to the end."""
    f.seek(start)
    line, line_start, position = _Line(), start, start
    while chunk := f.read(_CHUNK):
        pieces = chunk.split(b"\n")
        for piece in pieces[:-1]:
            line.add(piece)
            position += len(piece) + 1
            length = line.length
            text = line.take()
            if text is None:
                oversized(path, line_start, length)
            elif text.strip():
                yield line_start, text
            line_start = position
        line.add(pieces[-1])
        position += len(pieces[-1])
    length = line.length
    text = line.take()  # a last line with no newline: torn by a crash
    if text is None:
        oversized(path, line_start, length)
    elif text.strip():
        yield line_start, text


def _bisect(f: BinaryIO, seq: int) -> int:
    """A line start at or before the first line with a seq above `seq` (lines are in seq order):
    a few probes instead of reading the file up to there."""
    size = f.seek(0, os.SEEK_END)
    lo, hi = 0, size
    while hi - lo > _BISECT_UNTIL:
        mid = (lo + hi) // 2
        start, probed = _probe(f, mid, hi)
        if start >= hi:
            hi = mid  # no line starts in [mid, hi): the first at or after mid is the one at hi
        elif probed is None:
            break  # an unreadable line: read on from lo
        elif probed <= seq:
            lo = start
        else:
            hi = mid
    return lo


def _probe(f: BinaryIO, offset: int, limit: int) -> tuple[int, int | None]:
    """The first line starting after `offset` and before `limit`: its start and seq (None when
    unreadable or when `offset` falls in an oversized line); (limit, None) when there is none."""
    f.seek(offset - 1)
    rest = f.readline(MAX_LINE_BYTES + 1)  # the end of the line that `offset` falls in
    start = offset - 1 + len(rest)
    if not rest.endswith(b"\n"):
        return (offset, None) if len(rest) > MAX_LINE_BYTES else (limit, None)
    if start >= limit:
        return limit, None
    text = f.readline(MAX_LINE_BYTES + 1)
    try:
        seq = json.loads(text)["event"]["seq"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return start, None
    return start, seq if isinstance(seq, int) else None
