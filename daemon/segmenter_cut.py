"""Where the segmenter cuts an utterance that reached the length cap (35 s by default), and
where an utterance's speech began.

Apart from segmenter.py because these run once per cap or per utterance, not per frame, and read
the per-frame record (voiced flags, speech probabilities, audio) as a whole.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .audio.format import FRAME_SAMPLES


def cut_frame(flags: bytearray, probs: bytearray, audio: bytes, search: int, preroll: int) -> int:
    """Index of the first frame of the carried-on part, within the last `search` frames.

    The longest run of unvoiced frames wins (ties: the run the speech-probability stage heard
    least speech in, then the quieter one); the cut leaves up to `preroll` frames of that run in
    front of the speech that follows. With no unvoiced frame in reach, cut after the frame with
    the lowest speech probability (the quietest among equals; `probs` is all zeros when no
    probability stage runs, so then it is simply the quietest).
    """
    n = len(flags)
    lo = max(1, n - search)
    energy = _frame_energies(audio, lo, n)
    prob = np.frombuffer(bytes(probs[lo:n]), dtype=np.uint8).astype(np.float64)
    best: tuple[int, float, float] = (0, math.inf, math.inf)  # -length, prob, energy
    best_start = -1
    run = 0
    for k in range(lo, n + 1):
        if k < n and flags[k] == 0:
            run += 1
            continue
        if run:
            s = k - run
            key = (-run, float(prob[s - lo : k - lo].mean()), float(energy[s - lo : k - lo].mean()))
            if best_start < 0 or key < best:
                best, best_start = key, s
        run = 0
    if best_start < 0:
        # lowest probability first; energy (relative, < 1) breaks ties within one step of it
        return lo + int(np.argmin(prob + energy / (energy.max() + 1.0))) + 1
    run_end = best_start - best[0]
    return run_end - min(preroll, -best[0] // 2)


def _frame_energies(audio: bytes, lo: int, hi: int) -> np.ndarray:
    x = np.frombuffer(audio, dtype=np.int16)[lo * FRAME_SAMPLES : hi * FRAME_SAMPLES]
    x = x.astype(np.float32).reshape(hi - lo, FRAME_SAMPLES)
    return np.einsum("ij,ij->i", x, x)


def onset_index(flags: Sequence[int], window: int) -> int:
    """Index of the first voiced frame of the speech that just triggered a start.

    From the first voiced frame of the last `window` frames (the start window), walk back over
    earlier voiced frames until a whole window of unvoiced frames separates them from the speech.
    """
    n = len(flags)
    frames = range(max(0, n - window), n)
    onset = next((i for i in frames if flags[i]), frames.start)
    gap = 0
    for i in range(onset - 1, -1, -1):
        if flags[i]:
            onset, gap = i, 0
        else:
            gap += 1
            if gap >= window:
                break
    return onset
