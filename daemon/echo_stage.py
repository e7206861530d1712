"""The echo suppressor (echo.py) as an annotator stage (annotators.py) of the daemon.

It goes after the speaker stage when the daemon has both a microphone and a system channel: the
mic channels are near, the system channels far. Times are the bodies' wall-clock times (epoch s),
the one clock all live channels share. A dropped echo is logged at DEBUG with its text and
counted (`stats.dropped`, for `status`); it is not journaled, as it was never said on the mic.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence

from .annotators import Annotator, Final
from .echo import Action, EchoOptions, EchoStats, EchoSuppressor, Heard, Verdict
from .protocol import TranscriptBody, VadBody

log = logging.getLogger(__name__)


class EchoStage(Annotator):
    """Drops or trims mic results that repeat the system channel (see echo.py)."""

    def __init__(self, options: EchoOptions, clock: Callable[[], float] = time.time) -> None:
        self._suppressor = EchoSuppressor(options)
        self._clock = clock

    @classmethod
    def for_channels(cls, kinds: Sequence[tuple[str, str]]) -> EchoStage | None:
        """The stage for channels given as (label, spec) pairs, or None when there is no mic
        and system pair to suppress between."""
        near = tuple(label for label, spec in kinds if spec == "mic")
        far = tuple(label for label, spec in kinds if spec == "system")
        return cls(EchoOptions(near=near, far=far)) if near and far else None

    @property
    def stats(self) -> EchoStats:
        return self._suppressor.stats

    def push(self, final: Final) -> list[Final]:
        body = final.body
        text = body.text if isinstance(body, TranscriptBody) else ""
        start = body.speech_start if isinstance(body, TranscriptBody) else body.start
        end = body.end
        if start is None or end is None:  # an error with no times: nothing to compare
            return [final]
        heard = Heard(final.channel, text, start, end, body.speaker, key=final)
        return self._finals(self._suppressor.push(heard, self._clock()))

    def observe(self, vad: VadBody) -> list[Final]:
        if vad.channel is None:
            return []
        if vad.event == "speech_start":
            self._suppressor.speech_started(vad.channel, vad.time)
        elif vad.event == "speech_end":
            self._suppressor.speech_ended(vad.channel, vad.time)
        return self._finals(self._suppressor.poll(self._clock()))

    def next_deadline(self) -> float | None:
        return self._suppressor.next_deadline()

    def poll(self, now: float) -> list[Final]:
        return self._finals(self._suppressor.poll(now))

    def flush(self) -> list[Final]:
        return self._finals(self._suppressor.flush(self._clock()))

    def _finals(self, verdicts: list[Verdict]) -> list[Final]:
        out = []
        for v in verdicts:
            final: Final = v.heard.key
            if v.action is Action.DROP:
                # not lost: its final is published and journaled, empty, with what it heard
                log.debug("echo dropped on %s: %r", v.heard.channel, v.echoed)
                body = final.body
                if isinstance(body, TranscriptBody):
                    body = dataclasses.replace(
                        body, text="", suppressed="echo", suppressed_text=body.text
                    )
                out.append(dataclasses.replace(final, body=body))
            elif v.action is Action.TRIM:
                log.debug("echo cut from %s: %r", v.heard.channel, v.echoed)
                out.append(
                    dataclasses.replace(final, body=dataclasses.replace(final.body, text=v.text))
                )
            else:
                out.append(final)
        return out
