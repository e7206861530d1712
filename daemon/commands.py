"""The control socket's commands: check a request, act through the daemon, build the reply.

The socket itself (framing, malformed input) is `transport/control.py`; the state changes are the
daemon's own methods. This module is the part in between that a user's request is judged by.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any, Protocol

from . import __version__
from .config import Config
from .control_state import ControlState, PttAction
from .protocol import MAX_HISTORY, TOPICS, StatusBody
from .sockets import Sockets
from .switches import Switches
from .transport.control import CommandError, Handler
from .worker import Worker


class _Labelled(Protocol):
    label: str

    @property
    def paused(self) -> bool: ...


class Controlled(Protocol):
    """What the commands may ask of the daemon: a small interface, so this module needs
    nothing of server.py (which imports it) and the daemon's other parts stay its own."""

    config: Config
    config_loaded_at: float
    engine_name: str | None
    language: str
    state: str
    worker: Worker
    sockets: Sockets

    @property
    def channels(self) -> Sequence[_Labelled]: ...

    def status_body(self, heartbeat: bool = False, detail: str | None = None) -> StatusBody: ...
    def set_language(self, language: str) -> None: ...

    @property
    def control(self) -> ControlState: ...

    @property
    def switches(self) -> Switches: ...


class Commands:
    def __init__(self, daemon: Controlled):
        self._daemon = daemon

    def handlers(self) -> dict[str, Handler]:
        return {
            "status": self.status,
            "pause": self.pause,
            "resume": self.resume,
            "language": self.language,
            "history": self.history,
            "ptt": self.ptt,
            "toggle": self.toggle,
            "typing": self.typing,
        }

    async def status(self, request: dict[str, Any]) -> dict[str, Any]:
        d, sockets = self._daemon, self._daemon.sockets
        assert sockets.publisher is not None and sockets.journal is not None, "sockets first"
        status = d.status_body().fields()
        del status["heartbeat"]
        return {
            **status,
            "engine": d.engine_name,  # present (null) while the engine loads
            "source": status.get("source"),
            "version": __version__,
            "pid": os.getpid(),
            "pending": d.worker.pending(),
            "seq": sockets.publisher.sent_seq,
            "endpoints": {
                "events": sockets.publisher.endpoints,
                "control": sockets.control_endpoint,
            },
            "journal": str(sockets.journal.path),
            "config_file": str(d.config.source_file) if d.config.source_file else None,
            "config_loaded_at": round(d.config_loaded_at, 3),
            **(d.worker.engine.status_info() if d.worker.engine else {}),  # e.g. remote servers
        }

    async def pause(self, request: dict[str, Any]) -> dict[str, Any]:
        if not self._daemon.channels:
            raise CommandError("the daemon is still starting; try again in a moment")
        await self._daemon.switches.pause(self._channel(request))
        return {"state": self._daemon.state}

    async def resume(self, request: dict[str, Any]) -> dict[str, Any]:
        await self._daemon.switches.resume(self._channel(request))
        return {"state": self._daemon.state}

    async def ptt(self, request: dict[str, Any]) -> dict[str, Any]:
        """A key down ("press"), up ("release") or tapped ("toggle": the daemon owns `held`, so
        a tapping client never falls out of step): idempotent, so a key binder's repeats and a
        lost key-up followed by a fresh press do no harm. `at`: when the key moved
        (time.time()), from a sender that may be slow to start."""
        d = self._daemon
        action = request.get("action")
        if action not in tuple(PttAction):
            choices = ", ".join(f'"{a}"' for a in PttAction)
            raise CommandError(f"'action' must be one of {choices}, got {_shown(action)}")
        at = request.get("at")
        if at is not None and (
            not isinstance(at, int | float) or isinstance(at, bool) or not math.isfinite(at)
        ):
            raise CommandError(f"'at' must be a time in seconds (time.time()), got {_shown(at)}")
        if not d.channels:
            raise CommandError("the daemon is still starting; try again in a moment")
        channel = d.switches.key_channel(self._channel(request))
        action = PttAction(action)
        if action is PttAction.TOGGLE and channel.capture.held:
            action = PttAction.RELEASE
        if action is not PttAction.RELEASE and channel.paused:
            raise CommandError(
                f"listening is off on channel {channel.label} (paused): "
                "`dictated toggle` or `dictated resume` first"
            )
        d.switches.ptt(action, channel.label, at)
        return d.switches.fields()

    async def toggle(self, request: dict[str, Any]) -> dict[str, Any]:
        d = self._daemon
        if not d.channels:
            raise CommandError("the daemon is still starting; try again in a moment")
        await d.switches.toggle()
        return {**d.switches.fields(), "state": d.state}

    async def typing(self, request: dict[str, Any]) -> dict[str, Any]:
        """Arm or disarm typing clients: true, false or "toggle"."""
        d = self._daemon
        armed = request.get("armed")
        if armed == "toggle":
            armed = not d.control.armed
        if not isinstance(armed, bool):
            raise CommandError(f"'armed' must be true, false or \"toggle\", got {_shown(armed)}")
        d.control.set_armed(armed)
        return d.switches.fields()

    def _channel(self, request: dict[str, Any]) -> str | None:
        """The optional `channel` of pause/resume: one channel's label, or all of them."""
        label = request.get("channel")
        labels = [c.label for c in self._daemon.channels]
        if label is not None and label not in labels:
            raise CommandError(f"'channel' must be one of {', '.join(labels)}, got {_shown(label)}")
        return label

    async def language(self, request: dict[str, Any]) -> dict[str, Any]:
        d = self._daemon
        language = request.get("language")
        if language is None:
            return {"language": d.language}
        if not isinstance(language, str):
            raise CommandError("'language' must be a string such as \"en\"")
        engine = d.worker.engine
        if engine is None:
            raise CommandError("the engine is still loading; try again when status is ready")
        try:
            d.set_language(engine.check_language(language))
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        return {"language": d.language}

    async def history(self, request: dict[str, Any]) -> dict[str, Any]:
        d = self._daemon
        since = request.get("since", 0)
        limit = request.get("limit", MAX_HISTORY)
        topics = request.get("topics")
        if not isinstance(since, int) or isinstance(since, bool) or since < 0:
            raise CommandError("'since' must be a non-negative integer seq")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 0 < limit <= MAX_HISTORY:
            raise CommandError(f"'limit' must be an integer in 1..{MAX_HISTORY}")
        if topics is not None and (
            not isinstance(topics, list) or not all(t in TOPICS for t in topics)
        ):
            raise CommandError(
                f"'topics' must be a list of topics ({', '.join(TOPICS)}), e.g. [\"transcript\"]"
            )
        assert d.sockets.publisher is not None, "sockets first"
        events, more, last_seq = await d.sockets.publisher.history(since, limit, topics)
        return {
            "events": [{"topic": e.topic, "event": e.body} for e in events],
            "more": more,  # ask again from the last event's seq
            "last_seq": last_seq,
        }


def _shown(value: object, limit: int = 60) -> str:
    """A refused argument as an error (and the log line it makes) shows it: cut short, since a
    key binder gone wrong may send anything, at any length."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
