"""SRT and WebVTT caption files that are valid at every moment, so a player can open them mid-meeting.

Each cue is formatted whole and appended with one write, then flushed and fsync'd; a WebVTT file's
header is on disk before its first cue. New files are 0600: captions are a transcript. Standard library only (see cues.py for why).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..speakers import clean_name
from .cues import Cue

FORMATS = ("srt", "vtt")
#: a new caption file is the meeting's transcript: owner-only whatever the umask. A file that
#: exists (replaced with --overwrite) keeps its mode: whoever made it chose who may read it.
PRIVATE_FILE = 0o600


class CaptionFileError(OSError):
    """A caption file cannot be created or written; the message names the file."""


class CaptionFileExists(CaptionFileError):
    """The caption file is already there: never replaced unless asked (it may be a past meeting)."""


def timestamp(seconds: float, fmt: str) -> str:
    """HH:MM:SS,mmm (SRT) or HH:MM:SS.mmm (WebVTT); hours grow past 99 for very long sessions."""
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{',' if fmt == 'srt' else '.'}{ms:03d}"


def _vtt_escape(line: str) -> str:
    """WebVTT cue text is markup: &, < and > must be escaped (which also keeps out "-->")."""
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _srt_clean(line: str) -> str:
    """SubRip has no escapes; an arrow in the text would read as a timing line to some players."""
    return line.replace("-->", "->")


def _first_line(line: str, speaker: str | None, fmt: str) -> str:
    """The cue's first line with its speaker: SubRip "Alice: text", WebVTT "<v Alice>text".

    A WebVTT voice span covers the rest of the cue, so it needs no end tag; its annotation is
    escaped like the text (a name cannot open a tag or end the span early).
    """
    speaker = clean_name(speaker)  # one plain line, whoever calls: a name cannot add a cue
    if not speaker:
        return line
    if fmt == "srt":
        return _srt_clean(f"{speaker}: {line}")
    return f"<v {_vtt_escape(speaker)}>{line}"


def format_cue(cue: Cue, fmt: str) -> str:
    """One cue block, ending with the blank line that separates cues."""
    times = f"{timestamp(cue.start, fmt)} --> {timestamp(cue.end, fmt)}"
    clean = _srt_clean if fmt == "srt" else _vtt_escape
    lines = [clean(line) for line in cue.lines]
    if lines:
        lines[0] = _first_line(lines[0], cue.speaker, fmt)
    return f"{cue.index}\n{times}\n" + "".join(f"{line}\n" for line in lines) + "\n"


def header(fmt: str) -> str:
    return "WEBVTT\n\n" if fmt == "vtt" else ""


def render(cues: list[Cue], fmt: str) -> str:
    """A whole caption file's text."""
    return header(fmt) + "".join(format_cue(cue, fmt) for cue in cues)


class CueFile:
    """An SRT or WebVTT file written cue by cue (created fresh: replace it only when asked)."""

    def __init__(self, path: Path, fmt: str, *, overwrite: bool = False):
        if fmt not in FORMATS:
            raise ValueError(f"caption format must be one of {FORMATS}, got {fmt!r}")
        self.path = Path(path)
        self.fmt = fmt
        # never through a symlink: in a shared folder such as /tmp one planted by another account
        # would have --overwrite truncate a file of ours that it points at
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW
        flags |= os.O_TRUNC if overwrite else os.O_EXCL
        try:
            self._fd = os.open(self.path, flags, PRIVATE_FILE)
        except FileExistsError as exc:
            raise CaptionFileExists(
                f"{self.path} already exists; choose another name or pass --overwrite"
            ) from exc
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise CaptionFileError(
                    f"{self.path} is a symbolic link; name the file itself (it is not followed)"
                ) from exc
            raise CaptionFileError(f"cannot create {self.path}: {exc.strerror}") from exc
        self._write(header(fmt))

    def _write(self, text: str) -> None:
        if not text:
            return
        data = text.encode("utf-8")
        try:
            written = os.write(self._fd, data)  # one append: a reader sees all of a cue or none
            while written < len(data):  # only on a nearly full disk; finish the cue regardless
                written += os.write(self._fd, data[written:])
            os.fsync(self._fd)
        except OSError as exc:
            raise CaptionFileError(f"cannot write {self.path}: {exc.strerror}") from exc

    def append(self, cues: list[Cue]) -> None:
        self._write("".join(format_cue(cue, self.fmt) for cue in cues))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> CueFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
