"""Wait for the keyboard to be let go before typing into X11.

A key that is down may be grabbed: a global hotkey (`dictated-hotkey --toggle` acts on the press;
desktop shortcuts that run `dictated ptt toggle` too) holds the X keyboard grab until its key is
released, and everything XTest types meanwhile goes to the grabbing program, not the focused
window. With speculation the final is often ready before a tapped key is up, so the first words
(or all of them) were lost. Typing therefore waits, bounded, until no key is down, as the X
server itself reports it (XQueryKeymap, through libX11 with ctypes). XTest cannot type atomically
against a key pressed mid-way; the xdotool backend types in short chunks, each after a check.
"""

from __future__ import annotations

import ctypes
import logging
import time

from . import libx11

log = logging.getLogger(__name__)

WAIT_S = 30.0  # past any tap or shortcut, and most of a push-to-talk hold cut at 35 s
SAY_AFTER_S = 1.0  # a wait longer than this is said on stderr
POLL_S = 0.01


class HeldKeys:
    """Which keys the X server has down; owns one display connection.

    A key still down after WAIT_S is taken as stuck and ignored until it is seen up again, so a
    stuck key costs one wait, not one per chunk typed.
    """

    def __init__(self) -> None:
        x = libx11.load()
        x.XQueryKeymap.argtypes = [ctypes.c_void_p, ctypes.c_char * 32]
        self._x = x
        self._dpy = libx11.open_display(x)
        self._keys = (ctypes.c_char * 32)()
        self._stuck: set[int] = set()

    def down(self) -> list[int]:
        """The keycodes down now."""
        self._x.XQueryKeymap(self._dpy, self._keys)
        bits = bytes(self._keys)
        return [i * 8 + b for i, byte in enumerate(bits) for b in range(8) if byte >> b & 1]

    def wait_released(self, timeout_s: float = WAIT_S) -> bool:
        """Block until no key is down (stuck ones aside); False if one still is after
        `timeout_s`: it is then counted stuck, and the caller types anyway."""
        start = time.monotonic()
        said = False
        while True:
            down = set(self.down())
            self._stuck &= down  # a stuck key let go counts again next time
            waiting = sorted(down - self._stuck)
            if not waiting:
                return True
            waited = time.monotonic() - start
            if waited >= timeout_s:
                self._stuck |= set(waiting)
                log.warning(
                    "keycodes %s are still held after %.1f s; typing anyway (a program grabbing "
                    "them would receive the text)",
                    waiting,
                    waited,
                )
                return False
            if not said and waited >= SAY_AFTER_S:
                log.warning("waiting for keycodes %s to be let go before typing", waiting)
                said = True
            time.sleep(POLL_S)

    def close(self) -> None:
        if self._dpy:
            self._x.XCloseDisplay(self._dpy)
            self._dpy = None
