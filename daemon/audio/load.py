"""Read any audio file libsndfile understands and convert it to 16 kHz mono int16 with soxr."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import soxr

from ..errors import AudioError
from .format import SAMPLE_RATE, float_to_int16


def to_mono_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """float (frames,) or (frames, channels) at `rate` -> float32 mono 16 kHz."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if rate != SAMPLE_RATE:
        x = soxr.resample(x, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return x


def load_audio(path: Path) -> np.ndarray:
    """Decode `path` to int16 mono 16 kHz; AudioError names the file and the reason."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file not found: {path}")
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError) as exc:
        raise AudioError(
            f"cannot read audio file {path}: {exc} (supported: WAV, FLAC, OGG, MP3 ...)"
        ) from exc
    if data.shape[0] == 0:
        raise AudioError(f"audio file {path} contains no samples")
    return float_to_int16(to_mono_16k(data, rate))
