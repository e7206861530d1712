"""The control socket's commands: check a request, act through the daemon, build the reply.

The socket itself (framing, malformed input) is `transport/control.py`; the state changes are the
daemon's own methods. This module is the part in between that a user's request is judged by.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from . import __version__
from .protocol import MAX_HISTORY, TOPICS
from .transport.control import CommandError, Handler

if TYPE_CHECKING:
    from .server import Daemon


class Commands:
    def __init__(self, daemon: Daemon):
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
        d = self._daemon
        status = d.status_body().fields()
        del status["heartbeat"]
        return {
            **status,
            "engine": d.engine_name,  # present (null) while the engine loads
            "source": status.get("source"),
            "version": __version__,
            "pid": os.getpid(),
            "pending": d.worker.pending(),
            "seq": d.publisher.sent_seq,
            "endpoints": {"events": d.publisher.endpoints, "control": d.control_endpoint},
            "journal": str(d.journal.path),
        }

    async def pause(self, request: dict[str, Any]) -> dict[str, Any]:
        if self._daemon.capture is None:
            raise CommandError("the daemon is still starting; try again in a moment")
        self._daemon.pause()
        return {"state": self._daemon.state}

    async def resume(self, request: dict[str, Any]) -> dict[str, Any]:
        self._daemon.resume()
        return {"state": self._daemon.state}

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
        events, more, last_seq = await d.publisher.history(since, limit, topics)
        return {
            "events": [{"topic": e.topic, "event": e.body} for e in events],
            "more": more,  # ask again from the last event's seq
            "last_seq": last_seq,
        }
