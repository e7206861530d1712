"""A small deterministic engine for daemon tests that are not about recognition.

It is a real `Engine` (the daemon runs it on its inference thread like any other); its "text"
is a fingerprint of the audio it was given, so a test can tell which utterance became which
transcript without a model. It can fail on chosen calls, to exercise the error path, take a
chosen time per decode, end its text with a chosen suffix (a period: a finished sentence), and
stop early when cancelled (like the Cohere greedy loop) or not (like Whisper).
"""

from __future__ import annotations

import threading
import time
import zlib

import numpy as np

from dictated.audio.format import SAMPLE_RATE
from dictated.engines.base import Cancelled, Engine, EngineOptions, Transcript


def fingerprint(pcm: np.ndarray) -> str:
    """What FakeEngine says for this audio: its length and a checksum of its int16 samples."""
    samples = np.round(np.asarray(pcm, dtype=np.float64) * 32768).astype("<i2")
    return f"{len(samples) / SAMPLE_RATE:.3f}s crc {zlib.crc32(samples.tobytes()):08x}"


class FakeEngine(Engine):
    name = "fake"
    languages = ("en", "de")

    def __init__(
        self,
        fail_calls: tuple[int, ...] = (),
        delay_s: float = 0.0,
        interruptible: bool = False,
        suffix: str = "",
    ):
        self.fail_calls = fail_calls  # 1-based numbers of the transcribe calls that raise
        self.delay_s = delay_s  # each decode takes this long ...
        self.interruptible = interruptible  # ... unless cancelled meanwhile, if interruptible
        self.suffix = suffix
        self.calls = 0
        self.cancelled = 0  # decodes that stopped early because they were cancelled
        self.heard: list[int] = []  # samples given to each call, in order
        self.threads: set[str] = set()

    @classmethod
    def load(cls, options: EngineOptions) -> FakeEngine:
        return cls()

    def transcribe(
        self, pcm: np.ndarray, language: str | None = None, cancel: threading.Event | None = None
    ) -> Transcript:
        self.calls += 1
        self.heard.append(len(pcm))
        self.threads.add(threading.current_thread().name)
        deadline = time.monotonic() + self.delay_s
        while time.monotonic() < deadline:  # "between tokens"
            if self.interruptible and cancel is not None and cancel.is_set():
                self.cancelled += 1
                raise Cancelled()
            time.sleep(0.002)
        if self.calls in self.fail_calls:
            raise RuntimeError(f"fake failure on call {self.calls}")
        return Transcript(
            text=fingerprint(pcm) + self.suffix,
            language=self.check_language(language),
            tokens=(self.calls,),
        )
