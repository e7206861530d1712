"""What every hotkey backend offers: listen for one key combination, call a Trigger, stop."""

from __future__ import annotations

import contextlib
import os
import select
from typing import Protocol

#: where the docs say how to bind a key in each desktop (Wayland compositors, GNOME, KDE)
DOCS = 'docs/hotkey.md ("Dictate with a key")'


class HotkeyUnavailable(RuntimeError):
    """This backend cannot work here; the message says what to install, grant or use instead."""


class Sink(Protocol):
    def down(self) -> None: ...

    def up(self) -> None: ...


class Listener(Protocol):
    name: str

    def run(self, sink: Sink) -> None:
        """Call sink.down()/up() for the key until stop(); raises HotkeyUnavailable when it cannot."""

    def stop(self) -> None:
        """End run() from another thread or a signal handler."""


class StopPipe:
    """A pipe whose read end wakes a select() loop when stop() is called (signal-safe)."""

    def __init__(self) -> None:
        self.read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True
        with contextlib.suppress(OSError):  # already woken (a full pipe) or closed
            os.write(self._write_fd, b"x")

    def wait(self, fds: list[int], timeout_s: float | None = None) -> list[int]:
        """The fds ready to read; [] when stopped or timed out."""
        ready, _, _ = select.select([self.read_fd, *fds], [], [], timeout_s)
        return [] if self.stopped else [fd for fd in ready if fd != self.read_fd]

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self._write_fd)
