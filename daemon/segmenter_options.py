"""The segmenter's knobs (config section `[segmenter]`), checked when the config is read.

Apart from segmenter.py (the per-frame machine) so the config reads them without webrtcvad's
arithmetic around, and the machine's file stays about the machine.
"""

from __future__ import annotations

from dataclasses import dataclass

from .audio.format import FRAME_MS, MAX_UTTERANCE_S
from .errors import ConfigError

VADS = ("silero", "webrtc")  # segmenter.vad's values


@dataclass(frozen=True)
class SegmenterOptions:
    """Segmentation knobs (config section `[segmenter]`). Durations round up to whole 30 ms frames."""

    aggressiveness: int = 3  # webrtcvad mode 0-3; 3 rejects the most non-speech
    preroll_ms: int = 400  # audio kept before the onset so first words are not clipped
    start_window_ms: int = 300  # window whose voiced fraction starts an utterance ...
    start_ratio: float = 0.8  # ... when it reaches this
    end_window_ms: int = 450  # window whose voiced fraction keeps speech going ...
    end_ratio: float = 0.5  # ... while it stays at least this
    hangover_ms: int = 600  # an utterance ends after this long without speech going on
    pause_ms: int = (
        180  # SpeechPaused (a speculative decode starts) this long after the last voiced frame
    )
    min_speech_ms: int = 300  # utterances with less voiced audio than this are dropped as blips
    max_utterance_s: float = MAX_UTTERANCE_S  # hard cap; longer speech is cut and carried on
    cut_search_ms: int = 6000  # how far back from the cap to look for a pause to cut at
    energy_gate_db: float = 3.0  # a voiced frame must be this far above the noise floor (0: off)
    # "silero": Silero VAD confirms what webrtcvad passes, so music and typing are not speech;
    # "webrtc": webrtcvad and the energy gate alone (no onnxruntime; music and clicks pass)
    vad: str = "silero"
    speech_threshold: float = 0.5  # Silero probability at which speech starts ...
    speech_threshold_end: float = 0.35  # ... and below which it stops (hysteresis)

    def __post_init__(self) -> None:
        _check_int("aggressiveness", self.aggressiveness, 0, 3)
        _check_int("preroll_ms", self.preroll_ms, 300, 5000)
        _check_int("start_window_ms", self.start_window_ms, 60, 3000)
        _check_ratio("start_ratio", self.start_ratio)
        _check_int("end_window_ms", self.end_window_ms, 60, 3000)
        _check_ratio("end_ratio", self.end_ratio)
        if self.end_ratio > self.start_ratio:
            raise ConfigError(
                f"segmenter.end_ratio must not exceed segmenter.start_ratio ({self.start_ratio}), "
                f"got {self.end_ratio}"
            )
        _check_int("hangover_ms", self.hangover_ms, 90, 10_000)
        _check_int("pause_ms", self.pause_ms, FRAME_MS, 10_000)
        _check_int("min_speech_ms", self.min_speech_ms, 0, 10_000)
        _check_number("max_utterance_s", self.max_utterance_s)
        if not 5.0 <= self.max_utterance_s <= MAX_UTTERANCE_S:
            raise ConfigError(
                f"segmenter.max_utterance_s must be between 5 and {MAX_UTTERANCE_S:g} s "
                f"(the engines' window), got {self.max_utterance_s}"
            )
        _check_int("cut_search_ms", self.cut_search_ms, 300, int(self.max_utterance_s * 500))
        _check_number("energy_gate_db", self.energy_gate_db)
        if not 0.0 <= self.energy_gate_db <= 30.0:
            raise ConfigError(
                f"segmenter.energy_gate_db must be between 0 and 30 dB, got {self.energy_gate_db}"
            )

        if self.vad not in VADS:
            raise ConfigError(
                f"segmenter.vad must be one of {', '.join(map(repr, VADS))}, got {self.vad!r}"
            )
        _check_ratio("speech_threshold", self.speech_threshold)
        _check_ratio("speech_threshold_end", self.speech_threshold_end)
        if self.speech_threshold_end > self.speech_threshold:
            raise ConfigError(
                "segmenter.speech_threshold_end must not exceed segmenter.speech_threshold "
                f"({self.speech_threshold}), got {self.speech_threshold_end}"
            )

    @property
    def max_frames(self) -> int:
        return int(self.max_utterance_s * 1000) // FRAME_MS  # rounds down: never over the cap


def _check_int(name: str, value: object, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"segmenter.{name} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"segmenter.{name} must be between {lo} and {hi}, got {value}")


def _check_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"segmenter.{name} must be a number, got {value!r}")


def _check_ratio(name: str, value: object) -> None:
    _check_number(name, value)
    if not 0.0 < value <= 1.0:  # type: ignore[operator]
        raise ConfigError(f"segmenter.{name} must be above 0 and at most 1, got {value}")
