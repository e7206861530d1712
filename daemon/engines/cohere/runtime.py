"""The runtime interface: the only stage that differs between CoreML and PyTorch.

A runtime encodes one utterance's features and then hands out a decoder session that steps one
token at a time while holding its own KV state. Everything else (prompt, repetition penalty,
no-repeat-ngram, EOS bias, stopping, detokenisation) is runtime-agnostic and lives in `decoding`
and `tokenizer`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class EncoderOutput:
    """Encoder result for one utterance, in the runtime's native array type.

    `hidden` is (1, frames, d_model) *after* the encoder->decoder projection, so a decoder never
    applies it again. `valid_frames` says how many encoder frames carry audio; the decoder's
    cross-attention ignores the rest.
    """

    hidden: Any
    valid_frames: int
    total_frames: int


class DecoderSession(ABC):
    """Per-utterance decoder state. Created by `CohereRuntime.start`; used by one thread."""

    position: int = 0  # number of tokens fed so far

    @abstractmethod
    def feed(self, token_ids: Sequence[int]) -> np.ndarray:
        """Feed tokens at the next positions; return float32 scores (vocab,) for the next token.

        Runtimes that can only step one token at a time loop internally and discard the scores
        predicted before the last fed token.
        """


class CohereRuntime(ABC):
    """A loaded encoder + decoder pair."""

    #: decoder KV capacity in positions (prompt + output tokens never exceed it)
    max_positions: int
    #: scores returned by `feed` are log-softmax values rather than raw logits
    scores_are_log_probs: bool = False
    #: weight precision of the decoder: "fp32", "fp16", "bf16" or "int8"; drives the default EOS bias
    decoder_precision: str = "fp32"

    @abstractmethod
    def max_feature_frames(self) -> int:
        """Largest number of feature frames `encode` accepts (3500 = 35 s for the published encoder)."""

    def encode_cost(self, valid_frames: int) -> float:
        """Cost of encoding `valid_frames` next to the largest input (1.0), for partials' hint.

        Default: proportional to the length (an encoder that takes any length, like PyTorch's).
        """
        return min(1.0, max(valid_frames, 1) / self.max_feature_frames())

    @abstractmethod
    def encode(self, features: np.ndarray, valid_frames: int) -> EncoderOutput:
        """Encode (frames, 128) float32 features whose first `valid_frames` frames are real audio."""

    @abstractmethod
    def start(self, encoded: EncoderOutput) -> DecoderSession:
        """A fresh decoder session (fresh KV state) attending to `encoded`."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release models."""
