"""Faster than the pause: speculative decoding, adaptive end of speech and partial results.

The policy, apart from the mechanics (the worker's speculative lane, the segmenter's hooks):

- when the open utterance pauses (`SpeechPaused`), decode what was said so far; if the pause
  becomes the end and no speech came after, the worker makes that result the final at once;
- if that text ends a sentence ("." "?" "!" "。" ..., and not after a word that cannot end one
  such as a trailing "and"), the utterance may end `sentence_end_ms` after the last voiced frame
  instead of after the full hangover; text that clearly goes on (a comma, "and", an ellipsis, no
  punctuation) keeps the full hangover. Speech that resumes after such an early end is a new
  utterance: the segmenter closed in silence, so no word is split;
- when speech resumes, the speculative decode is cancelled, unless partials are shown (then its
  text is one);
- partial results: the open utterance's text every `partial_interval_ms`, ephemeral, with the id
  the final will have. `cheap` runs them only where the engine's cost hint says a decode of that
  length is cheap (never for Whisper, which pads every decode to 30 s).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from .audio.format import FRAME_MS, SAMPLE_RATE
from .engines.base import CHEAP_COST, Engine
from .errors import ConfigError
from .events import OpenAudio
from .jobs import Speculation, SpeculativeResult
from .protocol import PartialBody
from .sentence_end import ends_sentence
from .worker import Worker

log = logging.getLogger(__name__)

MODES = ("auto", "on", "off")
PARTIAL_MODES = ("off", "on", "cheap")


@dataclass(frozen=True)
class SpeculationOptions:
    """Config section `[speculation]`."""

    mode: str = "auto"  # auto: on unless the engine says otherwise (all local engines say on)
    adaptive_end: bool = True  # a sentence-final speculative text shortens the hangover ...
    sentence_end_ms: int = 300  # ... to this long after the last voiced frame
    partials: str = "cheap"  # off | on | cheap (only where the engine's cost hint says cheap)
    partial_interval_ms: int = 1000  # audio between two partial results of one utterance

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(
                f"speculation.mode must be one of {', '.join(MODES)}, got {self.mode!r}"
            )
        if self.partials not in PARTIAL_MODES:
            raise ConfigError(
                f"speculation.partials must be one of {', '.join(PARTIAL_MODES)}, "
                f"got {self.partials!r}"
            )
        if not isinstance(self.adaptive_end, bool):
            raise ConfigError(
                f"speculation.adaptive_end must be true or false, got {self.adaptive_end!r}"
            )
        _check_ms("sentence_end_ms", self.sentence_end_ms, 3 * FRAME_MS, 10_000)
        _check_ms("partial_interval_ms", self.partial_interval_ms, 200, 60_000)


def _check_ms(name: str, value: object, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"speculation.{name} must be an integer (milliseconds), got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"speculation.{name} must be between {lo} and {hi} ms, got {value}")


# -- the policy -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenUtterance:
    """What the speculator knows of the utterance under way (from its `SpeechStarted`)."""

    id: str
    start_sample: int  # first sample, pre-roll included
    onset_sample: int


class Speculator:
    """Turns segmenter events into speculative-lane requests, and their results into partials
    and early ends. Runs on the event loop; the worker runs the decodes.

    `open_audio()` returns the segmenter's open utterance now; `end_early(start_sample,
    heard_until, hangover_ms)` asks the capture to end it sooner (it applies only if no speech
    came after `heard_until`); `publish` sends a partial.
    """

    def __init__(
        self,
        options: SpeculationOptions,
        engine: Engine,
        worker: Worker,
        open_audio: Callable[[], OpenAudio | None],
        end_early: Callable[[int, int, int], None],
        publish: Callable[[PartialBody], None],
        language: Callable[[], str],
        channel: str = "",
    ):
        """`channel` labels its requests: the worker keeps one pending request per channel."""
        self._channel = channel
        self._worker = worker
        self._open_audio = open_audio
        self._end_early = end_early
        self._publish = publish
        self._language = language
        self.configure(options, engine)
        self._open: OpenUtterance | None = None
        self._next_partial = 0  # stream offset from which the next partial is due
        self._paused = False
        self.partials = 0  # partial results published

    def configure(self, options: SpeculationOptions, engine: Engine) -> None:
        """Apply options and the engine's hints (at start, and when SIGHUP reloads either)."""
        self.options = options
        self.engine = engine
        self.speculate = options.mode == "on" or (
            options.mode == "auto" and engine.speculate_by_default
        )
        # partials at all: `cheap` asks the engine about a one-second clip, its cheapest
        self._partials = options.partials == "on" or (
            options.partials == "cheap" and engine.relative_cost(SAMPLE_RATE) <= CHEAP_COST
        )

    def describe(self) -> str:
        return (
            f"speculation {'on' if self.speculate else 'off'}, adaptive end "
            f"{'on' if self.speculate and self.options.adaptive_end else 'off'}, "
            f"partials {self.options.partials} ({'on' if self._partials else 'off'} for this engine)"
        )

    # -- segmenter events, in stream order ----------------------------------------------------

    def started(self, utterance_id: str, start_sample: int, onset_sample: int) -> None:
        self._open = OpenUtterance(utterance_id, start_sample, onset_sample)
        self._next_partial = onset_sample + self._interval_samples
        self._paused = False

    def paused(self, utterance_id: str) -> None:
        self._paused = True
        if self.speculate:
            self._request(utterance_id, "pause")

    def resumed(self, utterance_id: str) -> None:
        self._paused = False
        if not self._partials:
            self._worker.cancel_speculation(utterance_id)  # else its text is shown as a partial

    def ended(self, utterance_id: str) -> None:
        if self._open is not None and self._open.id == utterance_id:
            self._open = None

    def audio(self, stream_samples: int) -> None:
        """After each block (the stream is at `stream_samples`): a partial result when one is due."""
        if not self._partials or self._open is None or self._paused:
            return
        if stream_samples < self._next_partial:
            return
        audio = self._open_audio()
        if audio is None or audio.start_sample != self._open.start_sample:
            return
        end = audio.start_sample + len(audio.pcm)
        if end < self._next_partial or not self._partials_wanted(len(audio.pcm)):
            return
        self._next_partial = end + self._interval_samples
        self._speculate(self._open.id, audio, "partial")

    # -- results from the worker --------------------------------------------------------------

    def on_result(self, result: SpeculativeResult) -> bool:
        """A speculative result of an utterance whose final is not submitted yet. Returns True
        if it was shown as a partial."""
        spec, text = result.speculation, result.transcript.text
        if (
            self.speculate
            and self.options.adaptive_end
            and ends_sentence(text, result.transcript.language)
        ):
            log.debug("speculative text of %s ends a sentence: ending early", spec.id)
            self._end_early(spec.start_sample, spec.end_sample, self.options.sentence_end_ms)
        if not text or not self._partials_wanted(len(spec.pcm)):
            return False
        self._publish(
            PartialBody(
                id=spec.id,
                text=text,
                language=result.transcript.language,
                stream_start=round(spec.start_sample / SAMPLE_RATE, 3),
                stream_end=round(spec.end_sample / SAMPLE_RATE, 3),
                channel=self._channel or None,
            )
        )
        self.partials += 1
        return True

    # -- helpers ------------------------------------------------------------------------------

    @property
    def _interval_samples(self) -> int:
        return self.options.partial_interval_ms * SAMPLE_RATE // 1000

    def _partials_wanted(self, samples: int) -> bool:
        """Partials for a clip this long (`cheap`: a Cohere clip past the smallest bucket, no)."""
        mode = self.options.partials
        return self._partials and (mode == "on" or self.engine.relative_cost(samples) <= CHEAP_COST)

    def _request(self, utterance_id: str, reason: str) -> None:
        audio = self._open_audio()
        if (
            audio is None
            or self._open is None
            or self._open.id != utterance_id
            or audio.start_sample != self._open.start_sample
        ):
            return  # the utterance ended in the same block: its final is on the way
        self._speculate(utterance_id, audio, reason)

    def _speculate(self, utterance_id: str, audio: OpenAudio, reason: str) -> None:
        self._worker.speculate(
            Speculation(
                id=utterance_id,
                pcm=audio.pcm,
                start_sample=audio.start_sample,
                speech_end_sample=audio.speech_end_sample,
                language=self._language(),
                reason=reason,  # type: ignore[arg-type]
                channel=self._channel,
            )
        )
