"""Read caption files the way a strict player does, and through two independent parser packages.

`read_captions` checks everything a caption file must be for a player to open it mid-meeting
(header, numbering, time format, start < end, cues in time order, no empty or broken cue) with
this module's own strict reader, then parses the same text with `srt` (SubRip) or `webvtt-py`
(WebVTT), which we did not write, and checks both agree.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import srt
import webvtt

_TIME = {
    "srt": re.compile(r"^(\d{2,}):([0-5]\d):([0-5]\d),(\d{3})$"),
    "vtt": re.compile(r"^(\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3})$"),
}


@dataclass(frozen=True)
class ParsedCue:
    index: int
    start: float
    end: float
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.lines)


def _seconds(stamp: str, fmt: str) -> float:
    m = _TIME[fmt].match(stamp)
    assert m, f"bad {fmt} timestamp {stamp!r}"
    h, mi, s, ms = (int(g) for g in m.groups())
    return h * 3600 + mi * 60 + s + ms / 1000


def strict_parse(text: str, fmt: str, overlap: bool = False) -> list[ParsedCue]:
    """Cues in time order; with `overlap`, a cue may start before the previous one ends (two
    speakers at once) but never before it starts."""
    assert "\r" not in text
    if fmt == "vtt":
        assert text.startswith("WEBVTT\n\n"), f"WebVTT header missing: {text[:20]!r}"
        text = text[len("WEBVTT\n\n") :]
    if not text:
        return []
    assert text.endswith("\n\n"), f"the last cue is unfinished: {text[-40:]!r}"
    cues = []
    for block in text[:-2].split("\n\n"):
        rows = block.split("\n")
        assert len(rows) >= 3, f"a cue needs number, times and text: {block!r}"
        index, times, *lines = rows
        assert index == str(len(cues) + 1), f"cue numbered {index!r} after {len(cues)}"
        start, arrow, end = times.partition(" --> ")
        assert arrow, f"bad timing line {times!r}"
        cue = ParsedCue(int(index), _seconds(start, fmt), _seconds(end, fmt), tuple(lines))
        assert cue.start < cue.end, f"cue {index} ends before it starts: {times}"
        assert all(line.strip() for line in lines), f"empty caption line in cue {index}"
        assert all("-->" not in line for line in lines), f"'-->' inside cue {index}"
        if cues:
            before = cues[-1].start if overlap else cues[-1].end
            assert cue.start >= before, (
                f"cue {index} starts before cue {index - 1} {'starts' if overlap else 'ends'}"
            )
        cues.append(cue)
    return cues


def reference_parse(text: str, fmt: str) -> list[tuple[float, float, str]]:
    """(start, end, text) of each cue as the independent parser package reads them."""
    if fmt == "srt":
        return [
            (s.start.total_seconds(), s.end.total_seconds(), s.content)
            for s in srt.parse(text, ignore_errors=False)
        ]
    captions = webvtt.from_buffer(io.StringIO(text))
    return [
        (c.start_time.in_milliseconds() / 1000, c.end_time.in_milliseconds() / 1000, c.raw_text)
        for c in captions
    ]


def vtt_voices(path: Path) -> list[tuple[str | None, str]]:
    """(voice, text without the voice span) of each cue, as webvtt-py reads them."""
    return [(c.voice, c.text) for c in webvtt.read(str(path))]


def read_captions(path: Path, overlap: bool = False) -> list[ParsedCue]:
    fmt = path.suffix.lstrip(".")
    text = path.read_text(encoding="utf-8")
    cues = strict_parse(text, fmt, overlap)
    reference = reference_parse(text, fmt)
    assert [(c.start, c.end, "\n".join(c.lines)) for c in cues] == reference
    return cues
