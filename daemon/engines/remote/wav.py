"""One utterance as a 16 kHz mono 16-bit WAV in memory: what every transcription server reads."""

from __future__ import annotations

import io
import wave

import numpy as np

from ...audio.format import SAMPLE_RATE, SAMPLE_WIDTH, float_to_int16


def encode_wav(pcm: np.ndarray) -> bytes:
    """float32 [-1, 1] (the engine interface's format) or int16 PCM -> WAV bytes."""
    samples = pcm if pcm.dtype == np.int16 else float_to_int16(np.asarray(pcm, dtype=np.float32))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(SAMPLE_WIDTH)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(samples.astype("<i2").tobytes())
    return buffer.getvalue()


def probe_tone(seconds: float = 0.5) -> np.ndarray:
    """A quiet 440 Hz tone: a real request for warm-up and health checks that costs the server little."""
    t = np.arange(int(SAMPLE_RATE * seconds), dtype=np.float32) / SAMPLE_RATE
    return (0.05 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
