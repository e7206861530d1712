"""The user's switches over the running daemon's channels: pause/resume, listening on/off
(`toggle`) and the push-to-talk key. Apart from server.py, which only starts and stops things.

Every switch that changes what `fields()` says (mode, held, armed, listening) is followed at
once by a status event, so clients (a typing client's armed state, an editor's mode line) never
wait for the heartbeat. Where the daemon's state changes too (every channel paused: "paused"),
its own state event says it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .channel import Channel
from .control_state import ControlState, PttAction, voice_channel


class Switches:
    def __init__(
        self,
        control: ControlState,
        channels: Callable[[], Sequence[Channel]],
        publish_status: Callable[[], None],
        listening_changed: Callable[[bool], bool],
    ):
        """`listening_changed(listening)` moves the daemon's state between ready and paused
        and returns True if that published a status event itself."""
        self.control = control
        self._channels = channels
        self._publish_status = publish_status
        self._listening_changed = listening_changed

    def all_paused(self) -> bool:
        channels = self._channels()
        return bool(channels) and all(c.paused for c in channels)

    def fields(self) -> dict[str, Any]:
        """Who decides, as status bodies and the control replies say it."""
        return {
            "mode": self.control.mode,
            "held": any(c.capture.held for c in self._channels()),
            "armed": self.control.armed,
            "listening": not self.all_paused(),
        }

    async def pause(self, label: str | None = None) -> None:
        """Ignore a channel's audio (all channels' without `label`) until resumed; the utterance
        under way is transcribed, not lost, and a microphone is released (its stream closed,
        so the OS indicator goes off). A key held there is released with it."""
        before = self.fields()
        for channel in self._channels():
            if label in (None, channel.label):
                await channel.capture.pause()
        self._changed(before)

    async def resume(self, label: str | None = None) -> None:
        before = self.fields()
        for channel in self._channels():
            if label in (None, channel.label):
                await channel.capture.resume()
        self._changed(before)

    async def toggle(self) -> None:
        """Listening off (every channel paused, the microphone released) or on again."""
        if self.all_paused():
            await self.resume()
        else:
            await self.pause()

    def key_channel(self, label: str | None = None) -> Channel:
        """The channel a key acts on: `label`'s, else the microphone's (`voice_channel`)."""
        channels = self._channels()
        if label is None:
            label = voice_channel([c.spec for c in channels]).label
        return next(c for c in channels if c.label == label)

    def ptt(self, action: PttAction, label: str | None = None, at: float | None = None) -> None:
        """A push-to-talk key went down, came up, or was tapped (toggle: the opposite of what
        is held now) on a channel; `at`: when, if the sender knows. The caller refuses a press
        on a paused channel."""
        before = self.fields()
        capture = self.key_channel(label).capture
        if action is PttAction.TOGGLE:
            action = PttAction.RELEASE if capture.held else PttAction.PRESS
        if action is PttAction.PRESS:
            capture.press(at)
        else:
            capture.release(at)
        self._changed(before)

    def _changed(self, before: dict[str, Any]) -> None:
        after = self.fields()
        if after["listening"] != before["listening"] and self._listening_changed(
            after["listening"]
        ):
            return
        if after != before:
            self._publish_status()
