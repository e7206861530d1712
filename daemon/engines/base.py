"""The engine interface: `transcribe(pcm, language, cancel) -> Transcript`.

An engine is owned by exactly one thread (the worker's inference thread); nothing in here is
thread-safe and nothing needs to be, except `cancel`: an event another thread may set while a
speculative decode runs, which an interruptible engine checks between steps (the Cohere greedy
loop, between tokens) and answers by raising `Cancelled`. Heavy imports (torch, coremltools,
ctranslate2) happen inside the engine modules, never at package import, so `--help` and config
validation stay instant.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ..errors import ConfigError
from .remote.options import RemoteOptions

if TYPE_CHECKING:  # only in annotations: `dictated ptt` and config checks never load numpy
    # (typing.get_type_hints on Engine needs localns={"np": numpy})
    import numpy as np


@dataclass(frozen=True)
class Transcript:
    """One utterance's result.

    `timings_ms` holds per-stage wall times in milliseconds (e.g. `features`, `encoder`,
    `decoder`, `total`) plus `tokens_per_s` where the engine decodes tokens itself.
    """

    text: str
    language: str
    tokens: tuple[int, ...] = ()
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    truncated: bool = False
    engine: str | None = None  # who produced it, when not the configured engine (a fallback)
    # the engine's own no-speech signals, where it has them (None: it does not say):
    # Whisper's no_speech_prob / Cohere's probability of end-of-text as the first token, and the
    # mean log-probability of the output tokens. The worker's non-speech guard reads them.
    no_speech_prob: float | None = None
    avg_logprob: float | None = None


class Cancelled(Exception):  # noqa: N818 - it is an outcome, not a fault
    """A decode stopped early because its `cancel` event was set; it has no result."""


def check_cancelled(cancel: threading.Event | None) -> None:
    """Raise `Cancelled` if `cancel` is set: the one check engines put between their steps."""
    if cancel is not None and cancel.is_set():
        raise Cancelled()


@dataclass(frozen=True)
class EngineOptions:
    """Everything an engine may be configured with; built once from config + CLI.

    Fields an engine does not use are ignored by it. `None` means "the engine's default".
    """

    model: str | None = None  # local directory, model name, or hub repo id
    device: str = "auto"  # whisper/torch: cpu, cuda, mps, auto
    compute_type: str | None = None  # whisper: int8, float16...; torch: float32, float16, bfloat16
    compute_units: str = "all"  # coreml: all, cpu_only, cpu_and_gpu, cpu_and_ne
    eos_bias: float | None = None  # cohere: None follows the decoder precision (0 f16, 4 int8)
    punctuation: bool = True  # cohere: <|pnc|> vs <|nopnc|>
    beam_size: int = 1  # whisper
    window_s: float | None = None  # whisper: encoder window; None: auto (twice the audio, 10-30 s)
    cache_dir: Path | None = None  # compiled CoreML models and downloads
    remote: RemoteOptions = field(default_factory=RemoteOptions)  # [engine.remote]

    def __post_init__(self) -> None:
        if self.window_s is not None and not 5.0 <= self.window_s <= 30.0:
            raise ConfigError(
                f"engine.window_s must be between 5 and 30 s (Whisper's window), got {self.window_s}"
            )


#: `relative_cost` at or below this makes a partial result "cheap" (speculation.partials = "cheap")
CHEAP_COST = 0.5


class Engine(ABC):
    """A loaded speech recogniser. Construct with `create_engine(name, options)`."""

    name: ClassVar[str]
    languages: ClassVar[tuple[str, ...]]  # ISO 639-1 codes this engine accepts
    description: str | None = None  # the loaded model, for status and logs
    default_language: ClassVar[str] = "en"
    #: transcribe() stops soon after `cancel` is set (else a cancelled decode runs to its end and
    #: the caller discards it)
    interruptible: ClassVar[bool] = False
    #: speculative decoding during pauses is on by default (`speculation.mode = "auto"`); an
    #: engine whose every decode costs a shared server a request may say no
    speculate_by_default: ClassVar[bool] = True
    #: transcribe() accepts `on_partial(text_so_far)` and calls it as text arrives (a streaming
    #: server); the worker then publishes those as partial results of the final decode
    streams_partials: bool = False

    @abstractmethod
    def transcribe(
        self, pcm: np.ndarray, language: str | None = None, cancel: threading.Event | None = None
    ) -> Transcript:
        """Transcribe float32 mono 16 kHz audio (one utterance, at most 35 s).

        `cancel`: set by another thread when the result is no longer wanted; an interruptible
        engine then raises `Cancelled` between steps.
        """

    def relative_cost(self, samples: int) -> float:
        """Cost hint: what decoding `samples` of audio costs next to a full-window decode (1.0).

        Partial results in `cheap` mode run only when this is at most `CHEAP_COST`. The default
        (1.0: every decode costs the same, whatever its length) suits engines that pad to a fixed
        window, like Whisper's 30 s.
        """
        return 1.0

    def warmup(self) -> None:  # noqa: B027 - optional hook
        """Run once at start so the first real utterance does not pay for lazy init."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release models and device memory."""

    def status_info(self) -> dict:
        """Extra fields for the control socket's `status` reply (e.g. remote servers' health).

        Called from the event loop's thread, not the inference thread: an engine that has such
        state must guard it (the remote engine's server pool is locked)."""
        return {}

    def check_language(self, language: str | None) -> str:
        """Return the language to use or raise ValueError listing the supported ones."""
        lang = language or self.default_language
        if lang not in self.languages:
            supported = ", ".join(sorted(self.languages))
            raise ValueError(
                f"engine {self.name!r} does not support language {lang!r}; supported: {supported}"
            )
        return lang

    @classmethod
    @abstractmethod
    def load(cls, options: EngineOptions) -> Engine:
        """Load models; raises ModelError / MissingDependencyError with a fix in the message."""

    @classmethod
    def unavailable_reason(cls, options: EngineOptions) -> str | None:
        """Cheap check for `--engine auto`: None if this engine could load, else why not."""
        return None
