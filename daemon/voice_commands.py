"""The last annotator stage: what typing clients need to know of each final.

Every transcript leaves with `by_key` (a push-to-talk press opened it) and `armed` (whether
typing is armed as it is published). A transcript that is, as a whole, one of the configured
phrases ("stop dictation", "start dictation"; case and punctuation aside) is a voice command,
like Talon's sleep/wake: it switches `armed` first, so its own `armed` says the new state, and it
carries `command` so that no client types it. It is still journaled: nothing said is lost.

Only the microphone channel's finals can be commands (`voice_channel`: the user's own voice), whereas a
second channel (a call's far end, a video playing) is someone else's voice. Last in the list, so
a final the echo stage emptied (the microphone heard the speakers) is never taken for one.
"""

from __future__ import annotations

import dataclasses
import logging

from .annotators import Annotator, Final
from .control_state import ControlState
from .protocol import TranscriptBody

log = logging.getLogger(__name__)


class TypingState(Annotator):
    def __init__(self, control: ControlState, command_channel: str):
        """`command_channel`: the label of the channel whose speech may be a command."""
        self._control = control
        self._command_channel = command_channel

    def push(self, final: Final) -> list[Final]:
        body = final.body
        if not isinstance(body, TranscriptBody):
            return [final]
        command = None
        if final.channel == self._command_channel and not body.suppressed:
            command = self._control.options.command(body.text)
        if command is not None:
            log.info("voice command %s (utterance %s)", command, body.id)
            self._control.apply(command)
        body = dataclasses.replace(
            body,
            by_key=final.job.utterance.by_key,
            armed=self._control.armed,
            command=command.value if command is not None else None,
        )
        return [dataclasses.replace(final, body=body)]
