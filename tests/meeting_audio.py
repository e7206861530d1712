"""A two-track meeting from real speech, for the echo tests and benchmark.

The other side (the `system` channel) speaks in one espeak-ng voice; the user (the `mic` channel)
in another. The mic track holds the user's sentences plus the other side as a laptop microphone
hears it from the speakers: delayed, low-passed, reverberated by sox (real sox `reverb`), at
`echo_db` (-10 dB) relative to the other side's level. The script has the other side alone, the
user alone, the two talking over each other part of the time (double talk) and fully at once, and
ends on the user alone (a result that must come through without waiting).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from dictated.audio.format import SAMPLE_RATE
from dictated.audio.load import load_audio

from .speech import SENTENCES, VOICE, Spoken, overlay, silence, synthesize

FAR_VOICE = "en-gb"  # the other side: a different voice from the user's en-us
GAP_S = 1.5  # silence between turns
ECHO_DELAY_S = 0.04  # speaker → mic latency of a laptop (playback buffer + air)


@dataclass(frozen=True)
class Meeting:
    """The tracks (int16 mono 16 kHz, same length) and who said what where."""

    system: np.ndarray  # what the computer played: the other side
    mic: np.ndarray  # the user plus the other side's echo
    mic_alone: np.ndarray  # the user only (the reference for the user's WER)
    far: tuple[Spoken, ...]
    near: tuple[Spoken, ...]

    @property
    def near_text(self) -> str:
        return " ".join(s.text for s in self.near)


# (who, sentence index, when): "after" starts GAP_S after everything so far; "with" starts with
# the previous turn; "half" starts halfway through the previous turn.
_SCRIPT: tuple[tuple[str, int, str], ...] = (
    ("far", 6, "after"),  # the other side alone: its echo must not appear on the mic
    ("near", 0, "after"),  # the user alone: kept, not held
    ("far", 7, "after"),
    ("near", 1, "half"),  # double talk: the user cuts in halfway
    ("far", 8, "after"),
    ("near", 2, "after"),
    ("far", 9, "after"),
    ("near", 3, "with"),  # both at once
    ("near", 4, "after"),  # the user alone, last
)


def build_meeting(echo_db: float = -10.0, lead_s: float = 1.0, tail_s: float = 2.0) -> Meeting:
    """The meeting of `_SCRIPT`; deterministic (espeak-ng and sox are)."""
    placed: list[tuple[str, Spoken, np.ndarray]] = []
    end = round(lead_s * SAMPLE_RATE)
    for who, index, when in _SCRIPT:
        text = SENTENCES[index]
        clip = synthesize(text, FAR_VOICE if who == "far" else VOICE)
        prev = placed[-1][1] if placed else None
        if when == "after" or prev is None:
            at = end + (round(GAP_S * SAMPLE_RATE) if placed else 0)
        elif when == "with":
            at = prev.start_sample
        else:
            at = (prev.start_sample + prev.end_sample) // 2
        placed.append((who, Spoken(text, at, at + len(clip)), clip))
        end = max(end, at + len(clip))
    total = end + round(tail_s * SAMPLE_RATE)
    tracks = {"far": silence(total / SAMPLE_RATE), "near": silence(total / SAMPLE_RATE)}
    for who, spoken, clip in placed:
        tracks[who] = overlay(tracks[who], clip, spoken.start_sample)
    echo = room_echo(tracks["far"], echo_db)
    return Meeting(
        system=tracks["far"],
        mic=overlay(tracks["near"], echo, 0),
        mic_alone=tracks["near"],
        far=tuple(s for w, s, _ in placed if w == "far"),
        near=tuple(s for w, s, _ in placed if w == "near"),
    )


def room_echo(pcm: np.ndarray, gain_db: float) -> np.ndarray:
    """`pcm` as a microphone hears it from laptop speakers: delayed, band-limited, reverberated
    (sox), with its RMS `gain_db` relative to `pcm`'s; same length as `pcm`."""
    sox = shutil.which("sox")
    if sox is None:
        raise RuntimeError("sox is not installed (apt-get install sox); the echo tests need it")
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "far.wav", Path(tmp) / "echo.wav"
        soundfile.write(str(src), pcm, SAMPLE_RATE, subtype="PCM_16")
        effects = ["highpass", "200", "lowpass", "4000", "reverb", "60", "50", "80"]
        effects += ["pad", str(ECHO_DELAY_S), "0", "gain", "-n", "-3"]
        subprocess.run([sox, str(src), str(dst), *effects], check=True, capture_output=True)
        wet = load_audio(dst).astype(np.float64)[: len(pcm)]
    wet = np.pad(wet, (0, len(pcm) - len(wet)))
    want = _rms(pcm) * 10 ** (gain_db / 20)
    wet *= want / max(_rms(wet), 1e-9)
    return np.clip(np.round(wet), -32768, 32767).astype(np.int16)


def _rms(pcm: np.ndarray) -> float:
    """RMS over the samples that carry sound (silence would make a quiet track look quieter)."""
    x = pcm.astype(np.float64)
    loud = x[np.abs(x) > 64]
    return float(np.sqrt(np.mean(loud**2))) if len(loud) else 0.0


def write_wav(path: Path, pcm: np.ndarray) -> Path:
    soundfile.write(str(path), pcm, SAMPLE_RATE, subtype="PCM_16")
    return path
