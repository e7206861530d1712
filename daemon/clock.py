"""Maps stream sample offsets to wall-clock capture times.

Realtime sources (microphone, --realtime files) have a sample clock: a sample's capture time is its
block's capture time minus the samples that follow it. Sources read as fast as consumed have no
such clock; their samples are "captured" when their block was read.
"""

from __future__ import annotations

import bisect
from collections import deque

from .audio.format import SAMPLE_RATE

_KEEP_BLOCKS = 4096  # > 35 s of history even at 10 ms blocks


class StreamClock:
    def __init__(self, realtime: bool):
        self.realtime = realtime
        self._ends: deque[int] = deque(maxlen=_KEEP_BLOCKS)
        self._times: deque[float] = deque(maxlen=_KEEP_BLOCKS)
        self.samples = 0

    def add(self, n_samples: int, captured_at: float, gap_s: float = 0.0) -> int:
        """Count a block; `gap_s` of time not captured before it (a closed or lost device) moves
        the timeline on too, so stream time stays the capture timeline. The block's first offset."""
        self.samples += round(gap_s * SAMPLE_RATE)
        start = self.samples
        self.samples += n_samples
        self._ends.append(self.samples)
        self._times.append(captured_at)
        return start

    def wall(self, sample: int) -> float:
        """Capture time of stream offset `sample` (clamped to the history kept)."""
        if not self._ends:
            raise LookupError("no audio yet")
        i = min(bisect.bisect_left(self._ends, sample), len(self._ends) - 1)
        end, at = self._ends[i], self._times[i]
        return at - (end - sample) / SAMPLE_RATE if self.realtime else at
