"""Long audio split the way transformers' CohereAsrFeatureExtractor splits it, and texts re-joined.

`dictated transcribe --no-vad` transcribes a file whole, as transformers would, which is the mode
parity with transformers is checked in. Audio longer than the encoder's 35 s window is cut at
the quietest 1600-sample window (lowest RMS) among those starting in the last 5 s of each chunk;
the texts are joined with "" for Japanese and Chinese and " " otherwise, as the processor does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...audio.format import MAX_UTTERANCE_SAMPLES, SAMPLE_RATE

CHUNK_SAMPLES = MAX_UTTERANCE_SAMPLES  # the encoder's window (max_audio_clip_s)
BOUNDARY_SAMPLES = round(5.0 * SAMPLE_RATE)  # search for a cut in the chunk's last 5 s
ENERGY_WINDOW = 1600  # 100 ms windows, stepped without overlap
NO_SPACE_LANGUAGES = frozenset({"ja", "zh"})


def split_long_audio(pcm: np.ndarray) -> list[np.ndarray]:
    """Cut mono 16 kHz audio into chunks of at most 35 s (views into `pcm`); short audio is one chunk."""
    total = len(pcm)
    if total <= CHUNK_SAMPLES:
        return [pcm]
    bounds: list[tuple[int, int]] = []
    start = 0
    while start < total:
        if start + CHUNK_SAMPLES >= total:
            bounds.append((start, total))
            break
        search_start = start + CHUNK_SAMPLES - BOUNDARY_SAMPLES
        search_end = start + CHUNK_SAMPLES
        split = _quietest_window(pcm, search_start, search_end)
        split = max(start + 1, min(split, total))
        bounds.append((start, split))
        start = split
    return [pcm[a:b] for a, b in bounds if b > a]


def _quietest_window(pcm: np.ndarray, start: int, end: int) -> int:
    """Start of the lowest-RMS window in pcm[start:end]; the first one wins a tie.

    As in transformers, windows start every ENERGY_WINDOW samples at offsets below
    `len - ENERGY_WINDOW`, so the segment's last whole window is never a candidate.
    """
    segment = np.asarray(pcm[start:end], dtype=np.float32)
    if len(segment) <= ENERGY_WINDOW:
        return (start + end) // 2
    n_windows = -(-(len(segment) - ENERGY_WINDOW) // ENERGY_WINDOW)  # len(range(0, upper, step))
    windows = segment[: n_windows * ENERGY_WINDOW].reshape(n_windows, ENERGY_WINDOW)
    rms = np.sqrt(np.mean(windows * windows, axis=1, dtype=np.float32))
    return start + int(np.argmin(rms)) * ENERGY_WINDOW


def join_texts(texts: Sequence[str], language: str) -> str:
    """Join chunk transcripts: empty ones dropped, inner whitespace trimmed, "" for ja/zh else " "."""
    parts = [t for t in texts if t and t.strip()]
    if not parts:
        return ""
    separator = "" if language in NO_SPACE_LANGUAGES else " "
    return separator.join([parts[0].rstrip(), *(t.strip() for t in parts[1:])])
