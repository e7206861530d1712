"""The internal audio format, named once and derived.

Everything after the source is 16 kHz mono signed 16-bit PCM, cut into 30 ms frames because
webrtcvad accepts only 10/20/30 ms frames and 30 ms gives the best decisions per CPU cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where audio is converted: `dictated ptt` never loads it
    import numpy as np

SAMPLE_RATE = 16_000  # Hz; what webrtcvad, Whisper and Cohere Transcribe all take
SAMPLE_WIDTH = 2  # bytes per sample, int16
FRAME_MS = 30
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 480 samples
FRAME_BYTES = FRAME_SAMPLES * SAMPLE_WIDTH  # 960 bytes
MAX_UTTERANCE_S = 35.0  # Cohere Transcribe's encoder window (3500 feature frames)
MAX_UTTERANCE_SAMPLES = round(MAX_UTTERANCE_S * SAMPLE_RATE)  # 560000


def int16_to_float32(pcm: np.ndarray) -> np.ndarray:
    """int16 PCM -> float32 in [-1, 1), the engines' input format."""
    import numpy as np

    return pcm.astype(np.float32) / 32768.0


def float_to_int16(x: np.ndarray) -> np.ndarray:
    """float audio in [-1, 1] -> int16 with clipping (no wrap-around on hot input)."""
    import numpy as np

    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)
