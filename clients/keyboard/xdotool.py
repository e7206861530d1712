"""X11: `xdotool type`, which turns each character (unicode too) into keystrokes for the focused window.

Characters missing from the keymap are bound to spare keycodes first (`xkeymap`), because
xdotool's own bind-press-unbind loses them in a busy application and lowercases Latin-1
capitals. Without libX11 (never where xdotool runs, but cheap to allow) the capitals are pressed
as Shift plus their keysym instead, and the rest is left to xdotool. Nothing is typed while a key
is down (`xheld`): a grabbed hotkey would receive it.
"""

from __future__ import annotations

import logging
import os
import re

from .backend import BackendUnavailable, find_tool, run_tool
from .xheld import HeldKeys
from .xkeymap import KeymapBinder

log = logging.getLogger(__name__)

NAME = "xdotool"
INSTALL = "sudo apt install xdotool (Debian/Ubuntu), sudo dnf install xdotool, or your distribution's package"

# Latin-1 capitals: their keysyms equal their code points, and X lowercases them on a spare key
_LATIN1_CAPITALS = re.compile("([\u00c0-\u00d6\u00d8-\u00de]+)")


class XdotoolBackend:
    name = NAME

    def __init__(self) -> None:
        if not os.environ.get("DISPLAY"):
            raise BackendUnavailable("xdotool needs an X11 display and DISPLAY is not set")
        self.exe = find_tool("xdotool", INSTALL)
        try:
            self._keymap: KeymapBinder | None = KeymapBinder()
        except OSError as exc:
            log.warning("typing non-ASCII characters may be unreliable: %s", exc)
            self._keymap = None
        try:
            self._held: HeldKeys | None = HeldKeys()
        except OSError as exc:
            log.warning("cannot see held keys; a grabbed hotkey may swallow typing: %s", exc)
            self._held = None

    def _wait_released(self) -> None:
        if self._held is not None:
            self._held.wait_released()

    def type_text(self, text: str) -> None:
        # --clearmodifiers: a key the user still holds (Shift, Ctrl) must not change what is typed
        self._wait_released()
        if self._keymap is not None:
            for segment in self._keymap.segments(text):
                self._keymap.bind(segment)
                run_tool([self.exe, "type", "--clearmodifiers", "--", segment])
                self._keymap.typed()
            return
        for i, run in enumerate(_LATIN1_CAPITALS.split(text)):
            if i % 2:
                keys = [f"shift+U{ord(ch):04X}" for ch in run]
                run_tool([self.exe, "key", "--clearmodifiers", "--", *keys])
            elif run:
                run_tool([self.exe, "type", "--clearmodifiers", "--", run])

    def backspace(self, count: int) -> None:
        if count > 0:
            self._wait_released()
            run_tool(
                [self.exe, "key", "--clearmodifiers", "--repeat", str(count), "--", "BackSpace"]
            )

    def close(self) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None
        if self._keymap is not None:
            self._keymap.close()
            self._keymap = None
