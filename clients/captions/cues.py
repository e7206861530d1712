"""Caption cues: where an utterance sits on the captions' timeline, and how its text is cut up.

Standard library only: both `dictated-captions` (a light client) and `dictated transcribe --srt`
(the daemon's own CLI) build their cues here, so a recording and a live meeting caption alike.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CaptionOptions:
    """How captions are laid out; the defaults follow common broadcast practice (BBC, Netflix)."""

    line_chars: int = 42  # characters per caption line
    max_lines: int = 2  # lines per cue; longer utterances become several cues
    min_cue_s: float = 0.5  # a cue shorter than this cannot be read


@dataclass(frozen=True)
class Cue:
    """One caption on screen: 1-based number, timeline seconds, and its wrapped lines."""

    index: int
    start: float
    end: float
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.lines)


def wrap(text: str, width: int) -> list[str]:
    """`text` as caption lines of at most `width` characters (a longer word gets its own lines)."""
    return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def split_cues(
    text: str, start: float, end: float, options: CaptionOptions, first_index: int = 1
) -> list[Cue]:
    """One utterance -> cues of at most `max_lines` lines, sharing its time by their characters.

    Speech rate is roughly constant within an utterance, so a cue's share of characters is a fair
    estimate of its share of the time; the cues tile [start, end] exactly, without gaps.
    """
    lines = wrap(text, options.line_chars)
    if not lines:
        return []
    groups = [lines[i : i + options.max_lines] for i in range(0, len(lines), options.max_lines)]
    weights = [sum(len(line) for line in group) + len(group) for group in groups]
    total = sum(weights)
    cues = []
    at = start
    done = 0
    for i, group in enumerate(groups):
        done += weights[i]
        stop = end if i == len(groups) - 1 else start + (end - start) * done / total
        cues.append(Cue(first_index + i, at, stop, tuple(group)))
        at = stop
    return cues


def run_of(utterance_id: str) -> str:
    """The daemon run an utterance id ("<run_id>-<n>") belongs to; a new run restarts stream time."""
    return utterance_id.rpartition("-")[0] if "-" in utterance_id else ""


def _number(body: Mapping[str, Any], key: str) -> float | None:
    value = body.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class Timeline:
    """Places transcripts on one captions timeline that never runs backwards.

    Times come from a transcript's `stream_start`/`stream_end` (seconds into the audio source), so
    the captions of a recording line up with the recording. Stream time restarts at 0 when the
    daemon restarts (a new run id): that run is shifted to start after the last cue, or later, by
    the wall-clock time between the runs' starts where that is larger (a live meeting keeps its
    real timeline across a restart; a file read faster than real time cannot go backwards).
    Transcripts from a daemon without stream times are placed by their wall-clock times.
    """

    def __init__(self, options: CaptionOptions | None = None, start_after: float = 0.0):
        self.options = options or CaptionOptions()
        self.last_end = start_after
        self.next_index = 1
        self._run: str | None = None
        self._offset = start_after
        self._epoch_at_zero: float | None = None  # wall-clock epoch of timeline 0, when known

    def place(self, body: Mapping[str, Any]) -> list[Cue]:
        """The cues of one `transcript` body (none for empty text); advances the timeline."""
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            return []
        span = self._span(body)
        if span is None:
            return []
        start, end = span
        start = max(start, self.last_end)
        end = max(end, start + self.options.min_cue_s)
        cues = split_cues(text, start, end, self.options, self.next_index)
        if cues:
            self.next_index = cues[-1].index + 1
            self.last_end = cues[-1].end
        return cues

    def _span(self, body: Mapping[str, Any]) -> tuple[float, float] | None:
        s, e = _number(body, "stream_start"), _number(body, "stream_end")
        wall_start = _number(body, "speech_start") or _number(body, "start")
        wall_end = _number(body, "end")
        if s is None or e is None:  # an older daemon: wall-clock times only
            if wall_start is None or wall_end is None:
                return None
            if self._epoch_at_zero is None:
                self._epoch_at_zero = wall_start - self._offset
            return wall_start - self._epoch_at_zero, wall_end - self._epoch_at_zero
        run = run_of(str(body.get("id", "")))
        if run != self._run:
            origin = None if wall_start is None else wall_start - s  # this run's stream 0
            if self._run is not None:
                self._offset = self.last_end
                if origin is not None and self._epoch_at_zero is not None:
                    self._offset = max(self._offset, origin - self._epoch_at_zero)
            if origin is not None and self._epoch_at_zero is None:
                self._epoch_at_zero = origin - self._offset
            self._run = run
        return self._offset + s, self._offset + e
