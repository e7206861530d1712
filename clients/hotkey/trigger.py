"""Key downs and ups to control requests, sent off the listener's thread.

A listener calls `down()` / `up()` for its key; `Trigger` ignores a down while the key is down
(auto-repeat: a held key repeats its down, and must not reopen the utterance) and turns the rest
into `ptt press` / `ptt release` (hold) or, on each fresh down, `ptt toggle` (the daemon owns
`held`: a hold ended elsewhere -- `dictated ptt release`, a restart -- never inverts the next tap).
Each says when the key moved (`at`). Requests go through a queue to one sender thread, so a daemon
that is slow or gone never stalls the keyboard listener; a daemon that is not running is said
once per outage and waited for (the next key press tries again), never fatal.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from ..control import CommandFailed, DaemonUnavailable

log = logging.getLogger("dictated-hotkey")


class KeyEvent(StrEnum):
    """What the sender thread is asked to do; the first three are `ptt` actions as they are."""

    PRESS = "press"
    RELEASE = "release"
    TAP = "toggle"  # press or release, whichever the daemon is not in
    LET_GO = "let-go"  # at exit: release if the daemon says held


class Mode(StrEnum):
    HOLD = "hold"  # key down: press, key up: release (push-to-talk)
    TOGGLE = "toggle"  # tap to start, tap to stop


class Requester(Protocol):
    def request(self, cmd: str, **args: Any) -> dict[str, Any]: ...


@dataclass(frozen=True)
class SenderOptions:
    channel: str | None = None  # None: the daemon's default (its microphone's channel)


class Sender:
    """One thread sending `ptt` requests in order; it knows whether the daemon says held."""

    def __init__(self, control: Requester, options: SenderOptions = SenderOptions()):
        self.control = control
        self.options = options
        self.held = False  # as the daemon last said
        self._queue: queue.Queue[tuple[KeyEvent, float] | None] = queue.Queue()
        self._old_daemon = False  # it knows no `ptt toggle`: the tap is decided here
        self._down = False  # the daemon is known to be unreachable (said once)
        self._thread = threading.Thread(target=self._run, name="dictated-hotkey-send", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, event: KeyEvent) -> None:
        self._queue.put((event, time.time()))

    def close(self, timeout_s: float = 6.0) -> None:
        """Send what is queued (a release owed), then stop."""
        self._queue.put(None)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            event, at = item
            if event is KeyEvent.LET_GO:
                if not self.held:
                    continue
                event = KeyEvent.RELEASE
            if event is KeyEvent.TAP and self._old_daemon:
                event = KeyEvent.RELEASE if self.held else KeyEvent.PRESS
            self.send(event, at)

    def send(self, event: KeyEvent, at: float | None = None) -> dict[str, Any] | None:
        action = str(event)
        args: dict[str, Any] = {"action": action}
        if at is not None:
            args["at"] = round(at, 3)
        if self.options.channel:
            args["channel"] = self.options.channel
        try:
            reply = self.control.request("ptt", **args)
        except DaemonUnavailable as exc:
            self.held = False
            if not self._down:
                log.warning("%s; the key does nothing until it runs", exc)
            self._down = True
            return None
        except CommandFailed as exc:
            if event is KeyEvent.TAP and "'action'" in str(exc) and not self._old_daemon:
                self._old_daemon = True  # a daemon from before `ptt toggle`
                return self.send(KeyEvent.RELEASE if self.held else KeyEvent.PRESS, at)
            if "unknown command" in str(exc):
                log.error("this daemon has no push-to-talk (%s); update dictated", exc)
            else:
                log.error("ptt %s refused: %s", action, exc)
            return None
        if self._down:
            log.info("the daemon is back")
        self._down = False
        self.held = bool(reply.get("held", action == "press"))
        log.info("%s: %s", action, describe(reply))
        return reply


def describe(state: dict[str, Any]) -> str:
    """One line for a state reply: `held (push-to-talk, typing armed)`."""
    held = "held" if state.get("held") else "released"
    armed = "typing armed" if state.get("armed", True) else "typing disarmed"
    listening = "" if state.get("listening", True) else ", not listening"
    return f"{held} ({state.get('mode', '?')}, {armed}{listening})"


class Trigger:
    """What a listener calls; thread-safe (listeners call from their own threads)."""

    def __init__(self, mode: Mode, sender: Sender):
        self.mode = mode
        self.sender = sender
        self._is_down = False
        self._lock = threading.Lock()

    def down(self) -> None:
        with self._lock:
            if self._is_down:
                return  # auto-repeat
            self._is_down = True
        self.sender.put(KeyEvent.PRESS if self.mode is Mode.HOLD else KeyEvent.TAP)

    def up(self) -> None:
        with self._lock:
            if not self._is_down:
                return
            self._is_down = False
        if self.mode is Mode.HOLD:
            self.sender.put(KeyEvent.RELEASE)

    def finish(self) -> None:
        """At exit: a key still held, or toggled on, is released, so no utterance stays open."""
        if self.mode is Mode.HOLD:
            self.up()
        else:
            self.sender.put(KeyEvent.LET_GO)
