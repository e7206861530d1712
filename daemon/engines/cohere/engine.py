"""Cohere Transcribe engines: features -> runtime -> greedy decoding -> tokenizer.

`CohereEngine` is generic over the runtime; `CohereTorchEngine` (`--engine cohere-torch`) loads the
PyTorch one. This module imports neither torch nor transformers at import time: the registry
imports it to ask `unavailable_reason` for `--engine auto`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import threading
import time
from pathlib import Path
from typing import ClassVar

import numpy as np

from ...audio.format import SAMPLE_RATE
from ...errors import AudioError, MissingDependencyError, ModelError
from ...install_hint import pip_install_extra
from ..base import Engine, EngineOptions, Transcript, check_cancelled
from .checkpoint import DEFAULT_REPO, cached_checkpoint, checkpoint_problem, resolve_checkpoint
from .decoding import DecodingOptions, GreedyDecoder
from .features import HOP_LENGTH, MIN_SAMPLES, compute_features, pad_features
from .runtime import CohereRuntime
from .tokenizer import LANGUAGES, CohereTokenizer

log = logging.getLogger(__name__)

WARMUP_STEPS = 3  # one-token decoder steps run at warm-up, whatever the model says
INT8_EOS_BIAS = 4.0  # int8 decoders lose ~2 logits of EOS margin; +4 restored f16 quality upstream


def default_eos_bias(decoder_precision: str) -> float:
    return INT8_EOS_BIAS if decoder_precision == "int8" else 0.0


class CohereEngine(Engine):
    """One utterance at a time through the shared Cohere pipeline; the runtime is the only variable."""

    name: ClassVar[str] = "cohere"
    languages: ClassVar[tuple[str, ...]] = LANGUAGES
    interruptible: ClassVar[bool] = True  # the greedy loop checks `cancel` between tokens

    def __init__(self, runtime: CohereRuntime, tokenizer: CohereTokenizer, options: EngineOptions):
        self.runtime = runtime
        self.tokenizer = tokenizer
        self.options = options
        eos_bias = (
            options.eos_bias
            if options.eos_bias is not None
            else default_eos_bias(runtime.decoder_precision)
        )
        self.decoding = DecodingOptions(eos_bias=eos_bias)
        self.decoder = GreedyDecoder(self.decoding, tokenizer.eos_id, tokenizer.nospeech_id)

    def with_decoding(self, **changes) -> None:
        """Override decoding options (e.g. `max_new_tokens`) for later utterances."""
        self.decoding = dataclasses.replace(self.decoding, **changes)
        self.decoder = GreedyDecoder(
            self.decoding, self.tokenizer.eos_id, self.tokenizer.nospeech_id
        )

    def relative_cost(self, samples: int) -> float:
        """The encoder pass dominates a short decode: its cost for this length, from the runtime."""
        return self.runtime.encode_cost(samples // HOP_LENGTH)

    def transcribe(
        self, pcm: np.ndarray, language: str | None = None, cancel: threading.Event | None = None
    ) -> Transcript:
        lang = self.check_language(language)
        prompt = self.tokenizer.prompt(lang, self.options.punctuation)
        if len(pcm) < MIN_SAMPLES:  # under 20 ms: no frames to normalise, nothing to say
            log.debug("utterance of %d samples is too short to transcribe", len(pcm))
            return Transcript(text="", language=lang)

        start = time.perf_counter()
        features = compute_features(pcm)
        values = features.values
        limit = self.runtime.max_feature_frames()
        if values.shape[0] > limit:
            if features.valid_frames > limit:
                raise AudioError(
                    f"utterance of {len(pcm) / SAMPLE_RATE:.1f} s is longer than the encoder's "
                    f"{limit * HOP_LENGTH / SAMPLE_RATE:.0f} s; split it first (chunking.split_long_audio)"
                )
            values = pad_features(values, limit, features.valid_frames)
        check_cancelled(cancel)
        encode_start = time.perf_counter()
        encoded = self.runtime.encode(values, features.valid_frames)
        decode_start = time.perf_counter()
        result = self.decoder.run(
            self.runtime, encoded, prompt, cancel, audio_seconds=len(pcm) / SAMPLE_RATE
        )
        result = dataclasses.replace(
            result,
            features_ms=(encode_start - start) * 1000.0,
            encoder_ms=(decode_start - encode_start) * 1000.0,
        )
        text = self.tokenizer.decode(result.tokens)
        return Transcript(
            text=text,
            language=lang,
            tokens=result.tokens,
            timings_ms=result.timings_ms(),
            truncated=result.truncated,
            no_speech_prob=result.no_speech_prob,
            avg_logprob=result.avg_logprob,
        )

    def warmup(self) -> None:
        """A 1 s utterance through every stage: first-use costs (allocations, kernel selection,
        weights paged in) land here, not on the first real utterance.

        A trained model answers silence with end-of-text at once, so the transcription alone
        would never run a one-token decoder step (the path every real token takes); a few such
        steps follow on the same encoding.
        """
        silence = np.zeros(SAMPLE_RATE, dtype=np.float32)
        lang = self.default_language
        self.transcribe(silence, lang)
        features = compute_features(silence)
        session = self.runtime.start(self.runtime.encode(features.values, features.valid_frames))
        prompt = self.tokenizer.prompt(lang, self.options.punctuation)
        session.feed(prompt)
        for _ in range(min(WARMUP_STEPS, self.runtime.max_positions - len(prompt))):
            session.feed([self.tokenizer.eos_id])

    def close(self) -> None:
        self.runtime.close()


class CohereTorchEngine(CohereEngine):
    """Cohere Transcribe on PyTorch via transformers (the `[torch]` extra)."""

    name: ClassVar[str] = "cohere-torch"

    @classmethod
    def load(cls, options: EngineOptions) -> CohereTorchEngine:
        _require_torch()
        try:
            from .runtime_torch import TorchRuntime
        except ImportError as exc:  # transformers older than 5.4 has no CohereAsr classes
            raise MissingDependencyError(
                "transformers>=5.4",
                f"the cohere-torch engine ({exc})",
                pip_install_extra("torch"),
            ) from exc

        model_dir = resolve_checkpoint(options.model, options.cache_dir)
        tokenizer = CohereTokenizer.from_dir(model_dir)
        runtime = TorchRuntime.from_pretrained(model_dir, options.device, options.compute_type)
        if tokenizer.vocab_size != runtime.model.config.vocab_size:
            raise ModelError(
                f"{model_dir}: the tokenizer has {tokenizer.vocab_size} pieces but the model "
                f"{runtime.model.config.vocab_size} outputs"
            )
        return cls(runtime, tokenizer, options)

    @classmethod
    def unavailable_reason(cls, options: EngineOptions) -> str | None:
        """None only if torch and transformers are installed and the model is already local."""
        missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
        if missing:
            return f"{' and '.join(missing)} not installed ({pip_install_extra('torch')})"
        model = options.model
        if model is not None and (Path(model).expanduser().exists() or model.count("/") != 1):
            return checkpoint_problem(Path(model).expanduser())
        repo = model or DEFAULT_REPO
        if cached_checkpoint(repo, options.cache_dir) is None:
            return f"{repo} is not downloaded (it is gated: accept its license, `hf auth login`, then use it once)"
        return None


def _require_torch() -> None:
    for module in ("torch", "transformers"):
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(
                module, "the cohere-torch engine", pip_install_extra("torch")
            )
