"""Real synthesized speech for tests: espeak-ng sentences joined by pauses of chosen lengths.

A plain module (not a conftest) so the segmenter's tests, the end-to-end tests and the benchmarks
build their signals the same way. Clips are synthesized once with espeak-ng and cached as 16 kHz
mono int16 WAV files keyed by everything that shapes them (text, voice, speed, espeak-ng version),
so the suite does not re-synthesize on every run. Composed signals come with ground truth: where
each sentence's speech really starts and ends, measured from the clip's own samples.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile

from dictated.audio.format import SAMPLE_RATE
from dictated.audio.load import load_audio

# Distinct, natural sentences (10-15 words, no digits or names a model may spell differently),
# each transcribed word for word by Whisper tiny.en from espeak-ng's en-us voice.
SENTENCES: tuple[str, ...] = (
    "The quick morning train to the city was crowded with tired commuters.",
    "Please remember to pick up some milk and fresh fruit on your way home.",
    "Our team will meet on Thursday afternoon to discuss the new budget proposal.",
    "The old library downtown is famous for its beautiful reading room.",
    "She planted tomatoes and sunflowers in the garden behind her small house.",
    "We should leave early tomorrow because the weather is expected to turn cold.",
    "My brother started playing the piano when he was still a young boy.",
    "The children walked along the beach collecting shells and smooth colored stones.",
    "A gentle breeze carried the smell of rain across the quiet valley.",
    "The doctor said that regular exercise and good sleep are very important.",
    "I forgot my umbrella at work, so I came home completely soaked.",
    "Could you please send me the report before the end of the day?",
)

VOICE = "en-us"
SPEED_WPM = 160
# A sample counts as speech for ground truth when it rises above this (int16, -54 dBFS); espeak-ng
# pads its clips with exact digital silence, so trimming at this level finds the true onset.
_ONSET_LEVEL = 64


@dataclass(frozen=True)
class Spoken:
    """Ground truth for one sentence inside a composed signal (sample offsets, end exclusive)."""

    text: str
    start_sample: int
    end_sample: int


@dataclass(frozen=True)
class Composed:
    """A test signal and what was spoken where."""

    pcm: np.ndarray  # int16 mono 16 kHz
    spoken: tuple[Spoken, ...]

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.spoken)


def _default_cache_dir() -> Path:
    env = os.environ.get("DICTATED_TEST_CACHE")
    if env:
        return Path(env) / "speech"
    return (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        / "dictated-tests"
        / "speech"
    )


# Resolved once at import (test collection), before fixtures point XDG_CACHE_HOME at a tmp dir.
_CACHE_DIR = _default_cache_dir()


def cache_dir() -> Path:
    """Where synthesized clips live: $DICTATED_TEST_CACHE/speech, else the user's cache directory."""
    return _CACHE_DIR


@lru_cache(maxsize=1)
def espeak_version() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng); tests need it")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    return out.strip()


def synthesize(text: str, voice: str = VOICE, speed: int = SPEED_WPM) -> np.ndarray:
    """`text` spoken by espeak-ng as int16 mono 16 kHz, trimmed to its speech, cached on disk."""
    return _synthesize_cached(text, voice, speed).copy()


@lru_cache(maxsize=64)
def _synthesize_cached(text: str, voice: str, speed: int) -> np.ndarray:
    key = hashlib.sha256(f"{espeak_version()}|{voice}|{speed}|{text}".encode()).hexdigest()[:24]
    path = cache_dir() / f"{key}.wav"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            raw = Path(tmp) / "raw.wav"
            subprocess.run(
                ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text],
                check=True,
                capture_output=True,
            )
            pcm = _trim(load_audio(raw))  # espeak-ng writes 22.05 kHz; converted here
            tmp_out = Path(tmp) / "clip.wav"
            soundfile.write(str(tmp_out), pcm, SAMPLE_RATE, subtype="PCM_16")
            os.replace(tmp_out, path)  # atomic: concurrent test processes never see half a file
    pcm = load_audio(path)
    pcm.setflags(write=False)
    return pcm


def _trim(pcm: np.ndarray) -> np.ndarray:
    """Cut leading and trailing near-silence so a clip's first and last samples are its speech."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > _ONSET_LEVEL)
    if len(loud) == 0:
        raise RuntimeError("espeak-ng produced silence")
    return pcm[loud[0] : loud[-1] + 1]


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.int16)


def compose(
    sentences: list[str] | tuple[str, ...],
    pauses_s: float | list[float],
    *,
    lead_s: float = 1.0,
    tail_s: float = 1.5,
    noise_dbfs: float | None = None,
    noise_color: str = "white",
    seed: int = 0,
) -> Composed:
    """Sentences joined by pauses (one length for all, or one per gap), with silence around them.

    `noise_dbfs` adds seeded noise (`noise_color` white or pink) at that RMS level (e.g. -60 for
    a quiet room) over the whole signal, speech included.
    """
    gaps = [pauses_s] * (len(sentences) - 1) if isinstance(pauses_s, int | float) else pauses_s
    if len(gaps) != len(sentences) - 1:
        raise ValueError(
            f"{len(sentences)} sentences need {len(sentences) - 1} pauses, got {len(gaps)}"
        )
    parts = [silence(lead_s)]
    spoken = []
    pos = len(parts[0])
    for i, text in enumerate(sentences):
        clip = synthesize(text)
        spoken.append(Spoken(text, pos, pos + len(clip)))
        parts.append(clip)
        pos += len(clip)
        if i < len(gaps):
            parts.append(silence(gaps[i]))
            pos += len(parts[-1])
    parts.append(silence(tail_s))
    pcm = np.concatenate(parts)
    if noise_dbfs is not None:
        pcm = add_noise(pcm, noise_dbfs, seed, noise_color)
    return Composed(pcm, tuple(spoken))


def add_noise(pcm: np.ndarray, dbfs: float, seed: int = 0, color: str = "white") -> np.ndarray:
    """`pcm` plus seeded noise whose RMS is `dbfs` relative to full scale.

    White noise is flat; pink noise (power falling 3 dB per octave, like fans, traffic and most
    rooms) fluctuates far more from one 30 ms frame to the next, which is what makes it harder.
    """
    rng = np.random.default_rng(seed)
    rms = 32768.0 * 10 ** (dbfs / 20)
    noise = rng.normal(0.0, 1.0, len(pcm))
    if color == "pink":
        spectrum = np.fft.rfft(noise)
        f = np.arange(len(spectrum), dtype=np.float64)
        f[0] = 1.0
        noise = np.fft.irfft(spectrum / np.sqrt(f), len(pcm))
    elif color != "white":
        raise ValueError(f"noise color must be white or pink, got {color!r}")
    noise *= rms / noise.std()
    mixed = pcm.astype(np.float64) + noise
    return np.clip(np.round(mixed), -32768, 32767).astype(np.int16)


def clicks(
    seconds: float,
    every_ms: float,
    *,
    peak: int = 12000,
    click_ms: float = 4.0,
    seed: int = 0,
) -> np.ndarray:
    """Keyboard-like clicks: a short decaying broadband burst every `every_ms`, silence between."""
    rng = np.random.default_rng(seed)
    out = np.zeros(round(seconds * SAMPLE_RATE), dtype=np.float64)
    n = max(1, round(click_ms * SAMPLE_RATE / 1000))
    envelope = np.exp(-np.arange(n) / (n / 4))
    step = round(every_ms * SAMPLE_RATE / 1000)
    for at in range(0, len(out) - n, step):
        out[at : at + n] += rng.uniform(-1, 1, n) * envelope * peak
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def noise_bursts(
    seconds: float, every_ms: float, *, burst_ms: float = 60.0, dbfs: float = -20.0, seed: int = 0
) -> np.ndarray:
    """Bursts of white noise (`burst_ms` long, RMS `dbfs`) every `every_ms`: doors, bumps, rustle."""
    rng = np.random.default_rng(seed)
    out = np.zeros(round(seconds * SAMPLE_RATE), dtype=np.float64)
    n = max(1, round(burst_ms * SAMPLE_RATE / 1000))
    rms = 32768.0 * 10 ** (dbfs / 20)
    step = round(every_ms * SAMPLE_RATE / 1000)
    for at in range(0, len(out) - n, step):
        out[at : at + n] += rng.normal(0.0, rms, n)
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def overlay(base: np.ndarray, extra: np.ndarray, at_sample: int) -> np.ndarray:
    """`base` with `extra` mixed in from `at_sample` (clipped to int16, truncated at the end)."""
    out = base.astype(np.int32)
    end = min(len(out), at_sample + len(extra))
    out[at_sample:end] += extra[: end - at_sample]
    return np.clip(out, -32768, 32767).astype(np.int16)
