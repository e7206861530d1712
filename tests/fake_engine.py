"""A small deterministic engine for daemon tests that are not about recognition.

It is a real `Engine` (the daemon runs it on its inference thread like any other); its "text"
is a fingerprint of the audio it was given, so a test can tell which utterance became which
transcript without a model. It can fail on chosen calls, to exercise the error path.
"""

from __future__ import annotations

import threading
import zlib

import numpy as np

from dictated.audio.format import SAMPLE_RATE
from dictated.engines.base import Engine, EngineOptions, Transcript


def fingerprint(pcm: np.ndarray) -> str:
    """What FakeEngine says for this audio: its length and a checksum of its int16 samples."""
    samples = np.round(np.asarray(pcm, dtype=np.float64) * 32768).astype("<i2")
    return f"{len(samples) / SAMPLE_RATE:.3f}s crc {zlib.crc32(samples.tobytes()):08x}"


class FakeEngine(Engine):
    name = "fake"
    languages = ("en", "de")

    def __init__(self, fail_calls: tuple[int, ...] = ()):
        self.fail_calls = fail_calls  # 1-based numbers of the transcribe calls that raise
        self.calls = 0
        self.threads: set[str] = set()

    @classmethod
    def load(cls, options: EngineOptions) -> FakeEngine:
        return cls()

    def transcribe(self, pcm: np.ndarray, language: str | None = None) -> Transcript:
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        if self.calls in self.fail_calls:
            raise RuntimeError(f"fake failure on call {self.calls}")
        return Transcript(
            text=fingerprint(pcm), language=self.check_language(language), tokens=(self.calls,)
        )
