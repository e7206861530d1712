"""Caption files in time order when two channels' finals arrive out of order.

The daemon decodes utterances one at a time in the order they end: when the other side talks
from 5 s to 10 s and you say "yes" at 8 s, your final comes first, though their cue starts
earlier. Files are append-only and must list cues in time order (WebVTT requires it), so once a
second channel has been heard each utterance waits up to WINDOW_S (wall clock) before it is cut
into cues, and a cue is written once no waiting utterance starts before it (a long utterance's
later cues wait for the other side's words said meanwhile); cues are numbered as written. One
channel's finals come in order: with one, nothing waits (files are written as before speakers).

A final later than the window is still written, starting no earlier than the last cue written
(the file never goes back); the live page and the terminal show every caption at once, the
page in its place.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace

from .cues import Cue, Utterance

WINDOW_S = 10.0  # covers the other side's utterance finishing up to ~9 s after yours
MAX_HELD = 64  # utterances waiting at most; beyond, the earliest is written at once


class Reorder:
    """Holds utterances for the files and lets them go in (start, seq) order."""

    def __init__(
        self,
        window_s: float = WINDOW_S,
        max_held: int = MAX_HELD,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s, self.max_held, self._clock = window_s, max_held, clock
        self._held: list[tuple[float, Utterance]] = []  # (arrival, utterance)
        self._channels: set[str | None] = set()
        self._cues: list[Cue] = []  # cut, not yet written: a held utterance may start before
        self._next_index = 1
        self.written_start = 0.0  # the last cue written starts here: none may start before

    def push(self, utterance: Utterance) -> list[Utterance]:
        """Take one utterance; return those due now, in order (it, at once, with one channel)."""
        if len(self._channels) < 2:
            self._channels.add(utterance.channel)
        if len(self._channels) < 2 and not self._held:
            return [utterance]
        self._held.append((self._clock(), utterance))
        self._held.sort(key=lambda held: (held[1].start, held[1].seq))
        return self.due()

    def due(self) -> list[Utterance]:
        """Those to write now: while the oldest has waited the window, the earliest goes."""
        out = []
        now = self._clock()
        while self._held and (
            len(self._held) > self.max_held
            or min(arrived for arrived, _ in self._held) + self.window_s <= now
        ):
            out.append(self._held.pop(0)[1])
        return out

    def flush(self) -> list[Utterance]:
        """All that wait, in order (on exit)."""
        out = [utterance for _, utterance in self._held]
        self._held.clear()
        return out

    def order(self, cues: list[Cue], everything: bool = False) -> list[Cue]:
        """Of these and the cues cut before, those to write now, in time order and numbered:
        each that no held utterance starts before (all, with `everything`)."""
        self._cues += cues
        self._cues.sort(key=lambda cue: cue.start)  # stable: an utterance's cues keep theirs
        floor = math.inf if everything else min((u.start for _, u in self._held), default=math.inf)
        ready = 0
        while ready < len(self._cues) and self._cues[ready].start <= floor:
            ready += 1
        out = [replace(c, index=self._next_index + i) for i, c in enumerate(self._cues[:ready])]
        del self._cues[:ready]
        if out:
            self._next_index = out[-1].index + 1
            self.written_start = out[-1].start
        return out

    @property
    def held(self) -> int:
        return len(self._held)
