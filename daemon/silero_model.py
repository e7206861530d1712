"""Where Silero VAD v6 comes from (faster-whisper's wheel), checked without loading anything.

Apart from speech_prob.py (numpy, onnxruntime) because the config check runs in every
`dictated ptt press`, which a key binding starts: it finds files, and imports nothing heavy.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import ConfigError


def model_path() -> Path:
    """Silero VAD v6 as faster-whisper ships it (no download)."""
    # found, not imported: importing faster-whisper loads CTranslate2, which a daemon on
    # another engine never needs
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or spec.origin is None:  # pragma: no cover - faster-whisper is a dependency
        raise ConfigError(
            'segmenter.vad = "silero" needs faster-whisper (it ships the model); install it '
            'or set segmenter.vad = "webrtc"'
        )
    path = Path(spec.origin).parent / "assets" / "silero_vad_v6.onnx"
    if not path.is_file():
        raise ConfigError(
            f'segmenter.vad = "silero": the model is missing from faster-whisper ({path}); '
            'reinstall faster-whisper or set segmenter.vad = "webrtc"'
        )
    return path


def check_model() -> None:
    """Raise ConfigError now if the model or onnxruntime is missing: called when the config is
    read or reloaded, so `vad = "silero"` fails at start (exit 2), not in a channel after the
    daemon said it was ready. Found, not loaded: every `dictated ptt press` reads the config,
    and a key binding must not pay for importing onnxruntime."""
    model_path()
    if importlib.util.find_spec("onnxruntime") is None:
        raise ConfigError(
            'segmenter.vad = "silero" needs onnxruntime; install it or set segmenter.vad = "webrtc"'
        )
