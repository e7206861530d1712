"""What the worker is asked to decode and what it gives back: a finished utterance (`Job`) and
its result, an open utterance's speculative decode (`Speculation`) and its result.

Apart from worker.py (the scheduling) so the router, the annotators and the speculation policy
read these shapes without the worker's machinery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from .engines.base import Transcript
from .events import Utterance
from .nonspeech import Dropped

if TYPE_CHECKING:  # annotations only: config and `dictated ptt` never load numpy
    # (typing.get_type_hints on these classes needs localns={"np": numpy})
    import numpy as np


@dataclass(frozen=True)
class Job:
    """One utterance to transcribe, with the wall-clock times (epoch s) the latency split needs."""

    id: str
    utterance: Utterance
    language: str
    start_wall: float  # capture time of the utterance's first sample
    speech_start_wall: float  # capture time of the detected speech onset (no pre-roll)
    speech_end_wall: float  # capture time of the end of speech
    closed_wall: float  # when the segmenter decided the utterance was over (after the hangover)
    queued_wall: float  # when the worker accepted it
    channel: str = ""  # the label of the channel it was heard on


@dataclass(frozen=True)
class JobResult:
    job: Job
    transcript: Transcript | None
    error: str | None  # why the engine failed, if it did
    engine_started: float
    engine_finished: float
    speculative: bool = False  # the transcript is a speculative decode's, made before the end
    #: the utterance held no speech (nonspeech.py): the transcript's text is empty
    dropped: Dropped | None = None


@dataclass(frozen=True)
class Speculation:
    """A decode of an utterance still open: its audio so far and the extent that audio covers."""

    id: str  # the utterance's id (assigned at speech start)
    pcm: np.ndarray  # int16, from the utterance's first sample (pre-roll included) so far
    start_sample: int  # stream offset of pcm[0]
    speech_end_sample: int  # stream offset just after the last voiced frame in pcm
    language: str
    reason: Literal["pause", "partial"]
    channel: str = ""  # each channel has its own pending request: two never displace each other

    @property
    def end_sample(self) -> int:
        return self.start_sample + len(self.pcm)

    def covers(self, utterance: Utterance, language: str) -> bool:
        """True if the finished `utterance` has no speech this decode did not hear.

        The speculative audio is a prefix of the utterance's when both start at the same sample;
        if speech ended inside that prefix, what follows is the unvoiced tail the segmenter
        waited through, and the speculative text is the utterance's text.
        """
        return (
            self.start_sample == utterance.start_sample
            and utterance.speech_end_sample <= self.end_sample
            and self.language == language
        )


@dataclass(frozen=True)
class SpeculativeResult:
    speculation: Speculation
    transcript: Transcript
    engine_started: float
    engine_finished: float


@dataclass
class SpeculationStats:
    """Counters of the speculative lane since start (reported in status and the benchmark)."""

    started: int = 0  # speculative decodes run on the engine
    reused: int = 0  # ... whose result became the final (no second decode)
    wasted: int = 0  # ... cancelled, failed, discarded, or neither final nor shown as a partial
