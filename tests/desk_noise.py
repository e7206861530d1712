"""The sounds of a real desk, for the segmenter's tests and bench/bench_noisy_desk.py.

Real recordings from Debian packages where one exists (.ci/run installs them), synthesis where not.
Each function returns int16 mono 16 kHz at a chosen RMS level (dBFS), seeded so runs repeat:

- `typing`: a keyboard typed on. Real key press and release recordings of an IBM Model M from
  `bucklespring-data` (/usr/share/buckle/wav; Ico Doornekampt, GPL-2+), strung together at a
  typist's rhythm (bursts of keys 60-250 ms apart, pauses between words and thoughts).
- `music`: instrumental music from a speaker. Kenta Cho's soundtrack of TUMIKI Fighters from
  `tumiki-fighters-data` (/usr/share/games/tumiki-fighters/sounds/*.ogg; BSD-2-Clause).
- `chimes`: notification sounds from `sound-theme-freedesktop` (/usr/share/sounds/freedesktop/
  stereo: message-new-instant by Damien Sandras, complete and bell by Richard Boulanger et al.,
  dialog-information by Ivica Bukvic; CC-BY-3.0 / CC-BY-SA-3.0 / GPL-2+ per file).
- `fan`: synthesised. A desk fan is broadband turbulence (brown-ish noise, -6 dB/octave) plus the
  blade-pass tone and its harmonics (here 110 Hz), slowly wavering; no packaged recording exists.
- `distant_voices`: espeak-ng talking in another voice, low-passed (a wall and distance take the
  highs) with a smeared echo (a room's reverberation), at a low level: colleagues across a room.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from dictated.audio.format import SAMPLE_RATE
from dictated.audio.load import load_audio
from tests.speech import SENTENCES, synthesize

SR = SAMPLE_RATE
BUCKLE_DIR = Path("/usr/share/buckle/wav")
MUSIC_DIR = Path("/usr/share/games/tumiki-fighters/sounds")
CHIME_DIR = Path("/usr/share/sounds/freedesktop/stereo")
MUSIC_TRACKS = ("return_to_home.ogg", "panic_on_meadow.ogg", "just_over_the_horizon.ogg")
CHIMES = ("message-new-instant.oga", "complete.oga", "bell.oga", "dialog-information.oga")


def _need(path: Path, package: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: install the Debian package {package} (.ci/run does)"
        )
    return path


@cache
def _load(path: Path, package: str) -> np.ndarray:
    return load_audio(_need(path, package))


def at_level(x: np.ndarray, dbfs: float) -> np.ndarray:
    """`x` scaled so its RMS is `dbfs` (clipped to int16)."""
    x = x.astype(np.float64)
    rms = float(np.sqrt(np.mean(x**2))) or 1.0
    y = x * (32768.0 * 10 ** (dbfs / 20) / rms)
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """`x` looped or cut to `n` samples."""
    reps = -(-n // len(x))
    return np.tile(x, reps)[:n]


def _release(press: Path) -> Path:
    return press.with_name(press.name.replace("-0.wav", "-1.wav"))


def typing(seconds: float, dbfs: float = -30.0, seed: int = 0) -> np.ndarray:
    """A keyboard typed on at ~5 keys a second, with word and thought pauses (real key sounds)."""
    _need(BUCKLE_DIR, "bucklespring-data")
    presses = [p for p in sorted(BUCKLE_DIR.glob("*-0.wav")) if _release(p).exists()]
    rng = np.random.default_rng(seed)
    n = round(seconds * SR)
    out = np.zeros(n + SR, dtype=np.float64)
    t = int(rng.integers(0, SR // 5))
    while t < n:
        key = presses[int(rng.integers(len(presses)))]
        down = _load(key, "bucklespring-data").astype(np.float64)
        up = _load(_release(key), "bucklespring-data")
        hold = int(rng.uniform(0.06, 0.12) * SR)
        end = min(len(out), t + len(down))
        out[t:end] += down[: end - t]
        end = min(len(out), t + hold + len(up))
        out[t + hold : end] += up[: end - t - hold].astype(np.float64)
        gap = rng.uniform(0.06, 0.25)
        if rng.random() < 0.15:  # between words
            gap += rng.uniform(0.15, 0.4)
        if rng.random() < 0.03:  # thinking
            gap += rng.uniform(0.8, 2.0)
        t += int(gap * SR)
    return at_level(out[:n], dbfs)


def music(seconds: float, dbfs: float = -30.0, seed: int = 0) -> np.ndarray:
    """Instrumental music (one of the tracks, from a seeded point, looped if need be)."""
    rng = np.random.default_rng(seed)
    name = MUSIC_TRACKS[int(rng.integers(len(MUSIC_TRACKS)))]
    track = _load(MUSIC_DIR / name, "tumiki-fighters-data")
    start = int(rng.integers(0, max(1, len(track) - round(seconds * SR))))
    return at_level(_fit(track[start:], round(seconds * SR)), dbfs)


def chimes(seconds: float, every_s: float = 4.0, dbfs: float = -30.0, seed: int = 0) -> np.ndarray:
    """Notification chimes, one every ~`every_s`, silence between (the level is each chime's)."""
    rng = np.random.default_rng(seed)
    n = round(seconds * SR)
    out = np.zeros(n, dtype=np.int32)
    t = int(rng.uniform(0.2, 1.0) * SR)
    while t < n:
        name = CHIMES[int(rng.integers(len(CHIMES)))]
        chime = at_level(_load(CHIME_DIR / name, "sound-theme-freedesktop"), dbfs)
        end = min(n, t + len(chime))
        out[t:end] += chime[: end - t]
        t += int(rng.uniform(0.6, 1.4) * every_s * SR)
    return np.clip(out, -32768, 32767).astype(np.int16)


def fan(seconds: float, dbfs: float = -40.0, seed: int = 0) -> np.ndarray:
    """A desk fan: brown-ish broadband noise plus a wavering 110 Hz blade tone and harmonics."""
    rng = np.random.default_rng(seed)
    n = round(seconds * SR)
    spectrum = np.fft.rfft(rng.normal(0.0, 1.0, n))
    f = np.fft.rfftfreq(n, 1 / SR)
    shape = 1.0 / np.maximum(f, 40.0)  # -6 dB/octave above 40 Hz
    shape[f > 6000] *= 0.3
    noise = np.fft.irfft(spectrum * shape, n)
    noise /= noise.std()
    t = np.arange(n) / SR
    wobble = 1 + 0.01 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6.3))
    phase = 2 * np.pi * 110 * np.cumsum(wobble) / SR
    tone = sum(np.sin(k * phase) / k for k in (1, 2, 3, 4))
    return at_level(noise + 0.5 * tone / np.std(tone), dbfs)


def distant_voices(seconds: float, dbfs: float = -42.0, seed: int = 0) -> np.ndarray:
    """Colleagues talking across the room: another voice, muffled and reverberant, low level."""
    rng = np.random.default_rng(seed)
    n = round(seconds * SR)
    out = np.zeros(n + SR, dtype=np.float64)
    t = int(rng.uniform(0, 1.0) * SR)
    while t < n:
        text = SENTENCES[int(rng.integers(len(SENTENCES)))]
        clip = synthesize(text, voice="en-gb").astype(np.float64)
        end = min(len(out), t + len(clip))
        out[t:end] += clip[: end - t]
        t += len(clip) + int(rng.uniform(0.5, 2.5) * SR)
    x = out[:n]
    spectrum = np.fft.rfft(x)
    f = np.fft.rfftfreq(n, 1 / SR)
    x = np.fft.irfft(spectrum / (1 + (f / 1200.0) ** 2), n)  # muffled: 12 dB/octave above 1.2 kHz
    tail = np.exp(-np.arange(int(0.4 * SR)) / (0.08 * SR)) * rng.normal(0, 1, int(0.4 * SR))
    wet = np.convolve(x, tail)[:n]
    return at_level(x + 0.6 * wet * (np.std(x) / (np.std(wet) or 1.0)), dbfs)


def mix(*parts: np.ndarray) -> np.ndarray:
    """Sum equal-length int16 signals (clipped)."""
    total = np.sum([p.astype(np.int32) for p in parts], axis=0)
    return np.clip(total, -32768, 32767).astype(np.int16)
