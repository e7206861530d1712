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
    """One caption on screen: 1-based number, timeline seconds, its wrapped lines and who spoke.

    A cue holds one utterance's words, so it never mixes two speakers; `speaker` is None when
    none is known (one unlabelled source) and the cue then reads exactly as before speakers.
    """

    index: int
    start: float
    end: float
    lines: tuple[str, ...]
    speaker: str | None = None

    @property
    def text(self) -> str:
        return " ".join(self.lines)


def wrap(text: str, width: int) -> list[str]:
    """`text` as caption lines of at most `width` characters (a longer word gets its own lines)."""
    return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def label_width(speaker: str | None) -> int:
    """Characters the speaker label takes before a cue's first line ("Alice: ")."""
    return len(speaker) + 2 if speaker else 0


def cue_groups(text: str, options: CaptionOptions, reserve: int = 0) -> list[list[str]]:
    """`text` as groups of at most `max_lines` lines; each group's first line is `reserve`
    characters shorter, leaving room for the label (never below half a line: a very long name
    makes that line longer rather than its text unreadable). Greedy wrapping line by line gives
    exactly `wrap`'s lines when nothing is reserved."""
    words = " ".join(text.split())
    width = options.line_chars
    first = max(width - reserve, width // 2)
    groups: list[list[str]] = []
    at = 0  # where the text not yet on a line starts (an index: no copy of the rest per line)
    while at < len(words):
        group: list[str] = []
        while at < len(words) and len(group) < options.max_lines:
            w = first if not group else width
            # a line depends only on what could reach it (a word longer than a line is split
            # only once seen whole past `w`): wrapping that much keeps long texts linear
            line = textwrap.wrap(words[at : at + 2 * w + 2], w, break_on_hyphens=False)[0]
            group.append(line)
            at += len(line)
            at += words[at : at + 1] == " "  # the space the line broke at
        groups.append(group)
    return groups


def split_cues(
    text: str,
    start: float,
    end: float,
    options: CaptionOptions,
    first_index: int = 1,
    speaker: str | None = None,
) -> list[Cue]:
    """One utterance -> cues of at most `max_lines` lines, sharing its time by their characters.

    Speech rate is roughly constant within an utterance, so a cue's share of characters is a fair
    estimate of its share of the time; the cues tile [start, end] exactly, without gaps. Each cue
    carries the speaker, whose label the files put before its first line (room is kept for it).
    """
    groups = cue_groups(text, options, label_width(speaker))
    if not groups:
        return []
    weights = [sum(len(line) for line in group) + len(group) for group in groups]
    total = sum(weights)
    cues = []
    at = start
    done = 0
    for i, group in enumerate(groups):
        done += weights[i]
        stop = end if i == len(groups) - 1 else start + (end - start) * done / total
        cues.append(Cue(first_index + i, at, stop, tuple(group), speaker))
        at = stop
    return cues


def run_of(utterance_id: str) -> str:
    """The daemon run an utterance id belongs to; a new run restarts stream time.

    Ids are "<run_id>-<n>", or "<run_id>-<channel>-<n>" with several channels: the run id (hex)
    has no dash, so it is what comes before the first one, whatever the channel's label holds.
    """
    return utterance_id.partition("-")[0] if "-" in utterance_id else ""


def _number(body: Mapping[str, Any], key: str) -> float | None:
    value = body.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


#: a channel's cues never overlap each other; more channels than this share one such limit
MAX_CHANNELS = 64


@dataclass(frozen=True)
class Utterance:
    """A transcript located on the timeline, before it is cut into cues."""

    text: str
    start: float
    end: float
    channel: str | None = None
    speaker: str | None = None
    seq: int = 0  # the event's seq: orders utterances that start at the same moment


class Timeline:
    """Places transcripts on one captions timeline that never runs backwards.

    Times come from a transcript's `stream_start`/`stream_end` (seconds into the audio source), so
    the captions of a recording line up with the recording. Stream time restarts at 0 when the
    daemon restarts (a new run id): that run is shifted to start after the last cue, or later, by
    the wall-clock time between the runs' starts where that is larger (a live meeting keeps its
    real timeline across a restart; a file read faster than real time cannot go backwards).
    Transcripts from a daemon without stream times are placed by their wall-clock times.

    Channels share the run's stream clock, so their cues interleave by stream time. A cue never
    starts before the previous cue does (files stay in time order) nor before its own channel's
    last cue ends; two channels' cues may overlap, as two people talking at once do.
    """

    def __init__(self, options: CaptionOptions | None = None, start_after: float = 0.0):
        self.options = options or CaptionOptions()
        self.start_after = start_after
        self.last_end = start_after  # the latest end of any cue or located utterance
        self.next_index = 1
        self._last_start = start_after
        self._ends: dict[str | None, float] = {}  # each channel's last cue end
        self._run: str | None = None
        self._offset = start_after
        self._epoch_at_zero: float | None = None  # wall-clock epoch of timeline 0, when known

    def place(self, body: Mapping[str, Any], speaker: str | None = None) -> list[Cue]:
        """The cues of one `transcript` body (none for empty text); advances the timeline."""
        utterance = self.locate(body, speaker)
        return [] if utterance is None else self.cut(utterance)

    def locate(self, body: Mapping[str, Any], speaker: str | None = None) -> Utterance | None:
        """Where a transcript sits on the timeline (None for empty text or no times)."""
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            return None
        span = self._span(body)
        if span is None:
            return None
        channel = body.get("channel")
        seq = body.get("seq")
        self.last_end = max(self.last_end, span[1])
        return Utterance(
            text,
            *span,
            channel if isinstance(channel, str) else None,
            speaker,
            seq if isinstance(seq, int) else 0,
        )

    def cut(self, utterance: Utterance, not_before: float | None = None) -> list[Cue]:
        """Its cues, numbered on, clamped so the file stays in order (see the class docstring):
        after the last cue cut, or `not_before` where the caller orders cues itself."""
        key = utterance.channel
        if key not in self._ends and len(self._ends) >= MAX_CHANNELS:
            key = None
        floor = self._last_start if not_before is None else not_before
        start = max(utterance.start, floor, self._ends.get(key, self.start_after))
        end = max(utterance.end, start + self.options.min_cue_s)
        cues = split_cues(
            utterance.text, start, end, self.options, self.next_index, utterance.speaker
        )
        if cues:
            self.next_index = cues[-1].index + 1
            self._last_start = cues[-1].start
            self._ends[key] = cues[-1].end
            self.last_end = max(self.last_end, cues[-1].end)
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
