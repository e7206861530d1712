"""What the segmenter reports: speech start, pauses inside speech, and finished utterances.

Events rather than only finished utterances, so speculative decoding (speculation.py: a decode at
a short pause, partial results) hooks into them without changing the segmenter. Each channel has
its own segmenter; sample positions are offsets in that channel's 16 kHz stream since its source
started.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from .audio.format import SAMPLE_RATE

if TYPE_CHECKING:  # annotations only: config and `dictated ptt` never load numpy
    # (typing.get_type_hints on these classes needs localns={"np": numpy})
    import numpy as np

# "key": a push-to-talk release ended it (keyed_segmenter.py)
EndReason = Literal["silence", "max_length", "end_of_input", "key"]


@dataclass(frozen=True)
class Utterance:
    """One finished stretch of speech (with pre-roll), at most 35 s long."""

    index: int  # 0, 1, 2... in stream order
    pcm: np.ndarray  # int16 mono 16 kHz, pre-roll and trailing hangover included
    start_sample: int  # stream offset of pcm[0]
    speech_end_sample: int  # stream offset just after the last voiced frame
    reason: EndReason
    speech_start_sample: int | None = None  # detected onset, no pre-roll (None: start_sample)
    # how much of it the VAD heard as speech, 0..1 (the Silero stage: the mean speech probability
    # over the frames from onset to last voiced frame that webrtcvad passed); None: no such stage
    speech_prob: float | None = None
    by_key: bool = False  # opened by a push-to-talk press (keyed_segmenter.py), not by the VAD

    @property
    def onset_sample(self) -> int:
        """Where the speech begins (the pre-roll before it excluded)."""
        return self.start_sample if self.speech_start_sample is None else self.speech_start_sample

    @property
    def end_sample(self) -> int:
        return self.start_sample + len(self.pcm)

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / SAMPLE_RATE


@dataclass(frozen=True)
class SpeechStarted:
    sample: int  # stream offset where the utterance (pre-roll included) begins
    onset_sample: int  # stream offset of the detected speech onset (no pre-roll)


@dataclass(frozen=True)
class SpeechPaused:
    """Voicing stopped inside an utterance; it may resume or end after the hangover."""

    sample: int


@dataclass(frozen=True)
class SpeechResumed:
    """A voiced frame after a `SpeechPaused`: what was heard up to the pause is not all of it."""

    sample: int  # stream offset of the voiced frame


@dataclass(frozen=True)
class UtteranceEnded:
    utterance: Utterance


@dataclass(frozen=True)
class OpenAudio:
    """The utterance under way, so far: what a speculative decode or a partial result hears."""

    pcm: np.ndarray  # int16, pre-roll included
    start_sample: int  # stream offset of pcm[0]
    speech_end_sample: int  # stream offset just after its last voiced frame so far


SegmenterEvent = SpeechStarted | SpeechPaused | SpeechResumed | UtteranceEnded
