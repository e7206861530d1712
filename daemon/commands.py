"""The control socket's commands: check a request, act through the daemon, build the reply.

The socket itself (framing, malformed input) is `transport/control.py`; the state changes are the
daemon's own methods. This module is the part in between that a user's request is judged by.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol

from . import __version__
from .config import Config
from .protocol import MAX_HISTORY, TOPICS, StatusBody
from .sockets import Sockets
from .transport.control import CommandError, Handler
from .worker import Worker


class _Labelled(Protocol):
    label: str


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
    async def pause(self, label: str | None = None) -> None: ...
    async def resume(self, label: str | None = None) -> None: ...
    def set_language(self, language: str) -> None: ...


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
        await self._daemon.pause(self._channel(request))
        return {"state": self._daemon.state}

    async def resume(self, request: dict[str, Any]) -> dict[str, Any]:
        await self._daemon.resume(self._channel(request))
        return {"state": self._daemon.state}

    def _channel(self, request: dict[str, Any]) -> str | None:
        """The optional `channel` of pause/resume: one channel's label, or all of them."""
        label = request.get("channel")
        labels = [c.label for c in self._daemon.channels]
        if label is not None and label not in labels:
            raise CommandError(f"'channel' must be one of {', '.join(labels)}, got {label!r}")
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
