"""Wait for the keyboard to be let go before typing into X11.

A key that is down may be grabbed: a global hotkey (`dictated-hotkey --toggle` acts on the press;
desktop shortcuts that run `dictated ptt toggle` too) holds the X keyboard grab until its key is
released, and everything XTest types meanwhile goes to the grabbing program, not the focused
window. With speculation the final is often ready before a tapped key is up, so the first words
(or all of them) were lost. Typing therefore waits, bounded, until no key is down, as the X
server itself reports it (XQueryKeymap, through libX11 with ctypes).
"""

from __future__ import annotations

import ctypes
import logging
import time

from . import libx11

log = logging.getLogger(__name__)

WAIT_S = 5.0  # longer than any tap or shortcut; a key stuck longer than this is typed over
POLL_S = 0.01


class HeldKeys:
    """Which keys the X server has down; owns one display connection."""

    def __init__(self) -> None:
        x = libx11.load()
        x.XQueryKeymap.argtypes = [ctypes.c_void_p, ctypes.c_char * 32]
        self._x = x
        self._dpy = libx11.open_display(x)
        self._keys = (ctypes.c_char * 32)()

    def down(self) -> list[int]:
        """The keycodes down now."""
        self._x.XQueryKeymap(self._dpy, self._keys)
        bits = bytes(self._keys)
        return [i * 8 + b for i, byte in enumerate(bits) for b in range(8) if byte >> b & 1]

    def wait_released(self, timeout_s: float = WAIT_S) -> bool:
        """Block until no key is down; False if one still is after `timeout_s` (typed anyway)."""
        deadline = time.monotonic() + timeout_s
        while keys := self.down():
            if time.monotonic() >= deadline:
                log.warning(
                    "keycodes %s are still held after %.0f s; typing anyway (a program grabbing "
                    "them would receive the text)",
                    keys,
                    timeout_s,
                )
                return False
            time.sleep(POLL_S)
        return True

    def close(self) -> None:
        if self._dpy:
            self._x.XCloseDisplay(self._dpy)
            self._dpy = None
