"""Annotators: small stages every final result passes through before it becomes an event.

Whisper's logit filters are the model: each stage does one thing, the router just applies the
list (assembled in `router.stages_for`). The first stage names the speaker from the channel; the
echo suppressor (echo_stage.py) goes after it, a diarizer could go after that; the typing
state and voice commands (voice_commands.py) come last, so they see what will be published.
A stage sees the results of ALL channels, in the order the engine finished them, and the voice
activity of all channels as it happens, so it may:

- pass a result on (`push` returns it), change it (`dataclasses.replace` on the body), or drop it
  (returns nothing: an echo of the other channel);
- hold a result until it knows more (`push` returns nothing now; a later `push` or `observe`
  returns it), e.g. a mic result until the system results that overlap it are known;
- release held results when time passes: `next_deadline()` says when (epoch s, `time.time()`),
  and the router calls `poll(now)` then (a bound on how long a result may wait);
- `flush` releases everything held: at the end of input the drain calls it before the sockets
  close, so nothing held is lost.

Stages run on the event loop and must not block (a model belongs on the worker's thread). What a
stage returns goes on to the next stage; what the last returns is published (journal first).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from .protocol import ErrorBody, TranscriptBody, VadBody
from .worker import Job

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Final:
    """A channel's final result on its way to an event: the body, and the job (audio, times)."""

    body: TranscriptBody | ErrorBody
    job: Job

    @property
    def channel(self) -> str:
        return self.job.channel


class Annotator:
    """A stage; the defaults pass everything through and hold nothing."""

    def push(self, final: Final) -> list[Final]:
        return [final]

    def observe(self, vad: VadBody) -> list[Final]:
        """Voice activity of any channel (speech_start, pause, speech_end): a stage holding
        results may release some now."""
        return []

    def next_deadline(self) -> float | None:
        """When `poll` should next be called (epoch s), or None: nothing held waits on time."""
        return None

    def poll(self, now: float) -> list[Final]:
        """Time passed: release what waited long enough."""
        return []

    def flush(self) -> list[Final]:
        """No more results will come: release all held."""
        return []


class SpeakerFromChannel(Annotator):
    """Sets `speaker` from the channel's label ([speakers], or the defaults; channel_spec.py)."""

    def __init__(self, speakers: Mapping[str, str | None]):
        self._speakers = dict(speakers)

    def push(self, final: Final) -> list[Final]:
        speaker = self._speakers.get(final.channel)
        if speaker is None:
            return [final]
        body = dataclasses.replace(final.body, speaker=speaker)
        return [dataclasses.replace(final, body=body)]


class Annotators:
    """The list of stages, applied in order. A stage that raises is logged and passed over
    (what it was given goes on unchanged): a bug in one stage must not lose a transcript."""

    def __init__(self, stages: Sequence[Annotator]):
        self.stages = list(stages)

    def push(self, final: Final) -> list[Final]:
        return self._through(0, [final])

    def observe(self, vad: VadBody) -> list[Final]:
        return self._released(lambda stage: stage.observe(vad))

    def poll(self, now: float) -> list[Final]:
        return self._released(lambda stage: stage.poll(now))

    def next_deadline(self) -> float | None:
        deadlines = [
            d for stage in self.stages if (d := _safe(stage.next_deadline, None)) is not None
        ]
        return min(deadlines, default=None)

    def flush(self) -> list[Final]:
        """Each stage lets go of what it holds, in order: what one releases passes the later
        stages before they are flushed in turn."""
        return self._released(lambda stage: stage.flush())

    def _released(self, release: Callable[[Annotator], list[Final]]) -> list[Final]:
        """What each stage releases, passed through the stages after it."""
        out: list[Final] = []
        for i, stage in enumerate(self.stages):
            out += self._through(i + 1, _safe(release, [], stage))
        return out

    def _through(self, start: int, finals: list[Final]) -> list[Final]:
        for stage in self.stages[start:]:
            finals = [out for final in finals for out in _safe(stage.push, [final], final)]
        return finals


def _safe(call: Callable[..., T], fallback: T, *args: object) -> T:
    """`call(*args)`, or `fallback` if it raises (logged with its traceback)."""
    try:
        return call(*args)
    except Exception:
        log.exception("an annotator stage failed; passing its input on unchanged")
        return fallback
