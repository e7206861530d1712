"""Greedy decoding policy for Cohere Transcribe, independent of the runtime (after openai/whisper).

Repetition handling follows transformers' definitions exactly (`RepetitionPenaltyLogitsProcessor`,
`NoRepeatNGramLogitsProcessor` in `generation/logits_process.py`), so that with the PyTorch
runtime our tokens equal `model.generate(..., repetition_penalty=1.1, no_repeat_ngram_size=3)`:
the tests compare them. The EOS bias is ours: int8 decoders lose about 2 logits of EOS margin and
keep talking; +4 on the eos score restored f16 quality upstream. A `cancel` event is checked
before every decoder step, so a speculative decode that is no longer wanted stops within a token.

The token budget follows the audio (`token_budget`): a decoder that keeps talking over noise stops
after a generous speaking rate's worth of tokens, not at the decoder's position limit (a 5 s clip
of noise once decoded 1014 tokens). The guard signals the worker reads come from the same filtered
scores the tokens are picked from, so every runtime fills them alike: `no_speech_prob`, the
probability that the first output token is end-of-text or Cohere's `<|nospeech|>` (its trained
answer to silence: either way the transcript is empty), and `avg_logprob`, the mean
log-probability of the chosen tokens (the final end-of-text included, as Whisper counts it).
Both are softmax-normalised here, which is a no-op for runtimes that already return log-probs.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..base import check_cancelled
from .runtime import CohereRuntime, EncoderOutput

log = logging.getLogger(__name__)


# The token budget per second of audio. Fast read speech is ~5 words/s; Cohere's 16k-piece
# multilingual SentencePiece spends ~1.3-2 tokens per word with punctuation in the European
# languages, and fast Japanese or Chinese (~8 characters/s) 1-1.5 tokens per character: at most
# ~10-12 tokens/s. Twice that for headroom is 20/s (a 35 s utterance may use 716 tokens, well
# under the decoder's 1024 positions); the margin keeps a one-word utterance from running short.
TOKENS_PER_SECOND = 20.0
TOKEN_MARGIN = 16


def token_budget(audio_seconds: float, rate: float = TOKENS_PER_SECOND) -> int:
    """Output tokens a transcript of `audio_seconds` may need at most (a generous speaking rate)."""
    return int(math.ceil(max(audio_seconds, 0.0) * rate)) + TOKEN_MARGIN


@dataclass(frozen=True)
class DecodingOptions:
    repetition_penalty: float = 1.1  # CTRL-style, over every token consumed (prompt included)
    no_repeat_ngram_size: int = 3  # 0 disables
    eos_bias: float = 0.0  # added to the eos score; 0 for fp16/bf16/fp32 decoders, 4 for int8
    max_new_tokens: int | None = None  # None: as many as the audio and decoder positions allow
    tokens_per_second: float | None = TOKENS_PER_SECOND  # None: no budget from the audio


@dataclass(frozen=True)
class DecodingResult:
    """Output tokens (no prompt, no eos) and what they cost.

    `truncated` is True when decoding stopped at the token limit rather than at eos: the text
    may be cut short and callers must say so.
    """

    tokens: tuple[int, ...]
    truncated: bool
    decoder_ms: float
    features_ms: float = 0.0
    encoder_ms: float = 0.0
    no_speech_prob: float | None = None  # P(first output token is end-of-text or <|nospeech|>)
    avg_logprob: float | None = None  # mean log-probability of the chosen tokens

    @property
    def tokens_per_s(self) -> float:
        return len(self.tokens) / (self.decoder_ms / 1000.0) if self.decoder_ms > 0 else 0.0

    def timings_ms(self) -> dict[str, float]:
        return {
            "features": self.features_ms,
            "encoder": self.encoder_ms,
            "decoder": self.decoder_ms,
            "total": self.features_ms + self.encoder_ms + self.decoder_ms,
            "tokens_per_s": self.tokens_per_s,
        }


class LogitFilter(ABC):
    @abstractmethod
    def apply(self, scores: np.ndarray, tokens: Sequence[int]) -> None:
        """Adjust float32 `scores` (vocab,) in place, given every token consumed so far."""


class RepetitionPenalty(LogitFilter):
    """transformers' rule: a seen token's score is divided by the penalty if positive, else multiplied."""

    def __init__(self, penalty: float):
        if penalty <= 0:
            raise ValueError(f"repetition penalty must be > 0, got {penalty}")
        self.penalty = np.float32(penalty)

    def apply(self, scores: np.ndarray, tokens: Sequence[int]) -> None:
        seen = np.unique(np.asarray(tokens, dtype=np.int64))
        seen = seen[(seen >= 0) & (seen < scores.shape[-1])]
        picked = scores[seen]
        scores[seen] = np.where(picked < 0, picked * self.penalty, picked / self.penalty)


class NoRepeatNGram(LogitFilter):
    """Ban every token that would complete an n-gram already present (prompt included)."""

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"no-repeat n-gram size must be >= 1, got {size}")
        self.size = size

    def apply(self, scores: np.ndarray, tokens: Sequence[int]) -> None:
        if len(tokens) < self.size:
            return
        ids = np.asarray(tokens, dtype=np.int64)
        windows = np.lib.stride_tricks.sliding_window_view(ids, self.size)
        prefix = ids[len(ids) - self.size + 1 :]
        banned = windows[(windows[:, :-1] == prefix).all(axis=1), -1]
        scores[banned[banned < scores.shape[-1]]] = -np.inf


class EosBias(LogitFilter):
    def __init__(self, eos_id: int, bias: float):
        self.eos_id, self.bias = eos_id, np.float32(bias)

    def apply(self, scores: np.ndarray, tokens: Sequence[int]) -> None:
        scores[self.eos_id] += self.bias


_noted_log_probs = False


def _note_log_probs() -> None:
    """Say once that the penalty is weaker on this decoder (defined on logits, it sees log-probs)."""
    global _noted_log_probs
    if not _noted_log_probs:
        _noted_log_probs = True
        log.info(
            "this decoder returns log-probabilities, not logits: the repetition penalty (defined "
            "on logits) multiplies their negative scores by the penalty, a weaker push against "
            "repeats; decoders from `dictated models export` and cache-external ones return logits"
        )


def _log_softmax_at(scores: np.ndarray, *ids: int) -> list[float]:
    """log-softmax of float32 `scores` at `ids` (-inf entries, banned tokens, count as zero)."""
    top = float(np.max(scores))
    log_sum = top + math.log(float(np.sum(np.exp(scores - top))))
    return [float(scores[i]) - log_sum for i in ids]


class GreedyDecoder:
    """Feeds the prompt, then takes the best token per step until eos or the token limit."""

    def __init__(self, options: DecodingOptions, eos_id: int, nospeech_id: int | None = None):
        """`nospeech_id`: Cohere's `<|nospeech|>` piece, its own answer to silence; a first token
        of it counts towards `no_speech_prob` like end-of-text does."""
        self.options = options
        self.eos_id = eos_id
        self.nospeech_id = nospeech_id if nospeech_id != eos_id else None
        filters: list[LogitFilter] = []
        if options.repetition_penalty != 1.0:
            filters.append(RepetitionPenalty(options.repetition_penalty))
        if options.no_repeat_ngram_size > 0:
            filters.append(NoRepeatNGram(options.no_repeat_ngram_size))
        if options.eos_bias:
            filters.append(EosBias(eos_id, options.eos_bias))
        self.filters = tuple(filters)

    def _filtered(self, scores: np.ndarray, tokens: Sequence[int]) -> np.ndarray:
        scores = np.array(scores, dtype=np.float32)  # a private copy the filters may edit
        for f in self.filters:
            f.apply(scores, tokens)
        return scores

    def token_limit(
        self, runtime: CohereRuntime, prompt_length: int, audio_seconds: float | None = None
    ) -> int:
        """Output tokens allowed: the audio's budget, `max_new_tokens`, and the decoder's positions
        (prompt + output never exceed them), whichever is smallest."""
        capacity = runtime.max_positions - prompt_length
        if capacity < 1:
            raise ValueError(
                f"a {prompt_length}-token prompt fills all {runtime.max_positions} decoder positions"
            )
        limit = capacity
        if self.options.max_new_tokens is not None:
            limit = max(0, min(limit, self.options.max_new_tokens))
        if audio_seconds is not None and self.options.tokens_per_second is not None:
            limit = min(limit, token_budget(audio_seconds, self.options.tokens_per_second))
        return limit

    def run(
        self,
        runtime: CohereRuntime,
        encoded: EncoderOutput,
        prompt: Sequence[int],
        cancel: threading.Event | None = None,
        audio_seconds: float | None = None,
    ) -> DecodingResult:
        """Decode greedily; raises `Cancelled` before the next step once `cancel` is set.

        `audio_seconds` (the utterance's length) caps the output at `token_budget`; without it only
        `max_new_tokens` and the decoder's positions do.
        """
        start = time.perf_counter()
        limit = self.token_limit(runtime, len(prompt), audio_seconds)
        if runtime.scores_are_log_probs and any(
            isinstance(f, RepetitionPenalty) for f in self.filters
        ):
            _note_log_probs()
        tokens = [int(t) for t in prompt]
        output: list[int] = []
        logprobs: list[float] = []
        no_speech_prob: float | None = None
        check_cancelled(cancel)
        session = runtime.start(encoded)
        scores = session.feed(tokens) if limit else None
        ended = False
        while scores is not None:
            check_cancelled(cancel)
            scores = self._filtered(scores, tokens)
            best = int(np.argmax(scores))
            best_logprob, eos_logprob = _log_softmax_at(scores, best, self.eos_id)
            logprobs.append(best_logprob)
            if no_speech_prob is None:
                no_speech_prob = math.exp(eos_logprob)
                if self.nospeech_id is not None and self.nospeech_id < len(scores):
                    no_speech_prob += math.exp(_log_softmax_at(scores, self.nospeech_id)[0])
            if best == self.eos_id:
                ended = True
                break
            output.append(best)
            tokens.append(best)
            if len(output) < limit:
                scores = session.feed([best])
            else:
                scores = None
                if self.options.max_new_tokens is None and len(tokens) <= runtime.max_positions:
                    # a position is still free: feed the last token only to learn whether the
                    # text ends here, so a transcript that just fits is not "truncated"
                    last = self._filtered(session.feed([best]), tokens)
                    ended = int(np.argmax(last)) == self.eos_id
                    if ended:
                        logprobs.append(_log_softmax_at(last, self.eos_id)[0])
        decoder_ms = (time.perf_counter() - start) * 1000.0
        if not ended:
            log.warning(
                "decoding stopped at the %d-token limit before end of text: truncated", limit
            )
        return DecodingResult(
            tokens=tuple(output),
            truncated=not ended,
            decoder_ms=decoder_ms,
            no_speech_prob=no_speech_prob,
            avg_logprob=float(np.mean(logprobs)) if logprobs else None,
        )
