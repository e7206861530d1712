"""Read any audio file libsndfile understands as 16 kHz mono int16, block by block.

Decoding streams: soundfile reads a block, channels are averaged, soxr's streaming resampler
converts the rate, so memory stays flat however long the file (a whole hour decoded to float32
first used to peak near 1 GB). `load_audio` is the same path collected into one array.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile
import soxr

from ..errors import AudioError
from .format import SAMPLE_RATE, float_to_int16

BLOCK_S = 1.0  # decoded per read: small against any file, large enough that overhead is nil


def to_mono_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """float (frames,) or (frames, channels) at `rate` -> float32 mono 16 kHz (one whole signal)."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if rate != SAMPLE_RATE:
        x = soxr.resample(x, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return x


class AudioFile:
    """An open audio file; `blocks()` yields it as int16 mono 16 kHz, one block at a time.

    Opening reads only the header, so a missing or unreadable file fails before any work starts.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise AudioError(f"audio file not found: {self.path}")
        try:
            self._file = soundfile.SoundFile(str(self.path))
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            raise AudioError(
                f"cannot read audio file {self.path}: {exc} (supported: WAV, FLAC, OGG, MP3 ...)"
            ) from exc
        self.rate = self._file.samplerate
        self.channels = self._file.channels
        if self._file.frames == 0:
            self.close()
            raise AudioError(f"audio file {self.path} contains no samples")

    @property
    def duration_s(self) -> float:
        return self._file.frames / self.rate

    def blocks(self, block_s: float = BLOCK_S) -> Iterator[np.ndarray]:
        """int16 mono 16 kHz blocks of about `block_s` seconds (the last one shorter), then close."""
        frames = max(1, round(block_s * self.rate))
        resampler = (
            None
            if self.rate == SAMPLE_RATE
            else soxr.ResampleStream(self.rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        )
        try:
            while True:
                try:
                    data = self._file.read(frames, dtype="float32", always_2d=True)
                except (soundfile.LibsndfileError, RuntimeError) as exc:
                    raise AudioError(f"cannot read audio file {self.path}: {exc}") from exc
                last = len(data) < frames
                mono = data.mean(axis=1, dtype=np.float32) if self.channels > 1 else data[:, 0]
                if resampler is not None:
                    mono = resampler.resample_chunk(np.ascontiguousarray(mono), last=last)
                if len(mono):
                    yield float_to_int16(mono)
                if last:
                    return
        finally:
            self.close()

    def close(self) -> None:
        self._file.close()


def load_audio(path: Path) -> np.ndarray:
    """Decode `path` whole to int16 mono 16 kHz; AudioError names the file and the reason."""
    return np.concatenate(list(AudioFile(path).blocks()))
