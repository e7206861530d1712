"""X11: `xdotool type`, which turns each character (unicode too) into keystrokes for the focused window.

Characters missing from the keymap are bound to spare keycodes first (`xkeymap`), because
xdotool's own bind-press-unbind loses them in a busy application and lowercases Latin-1
capitals. Without libX11 (never where xdotool runs, but cheap to allow) the capitals are pressed
as Shift plus their keysym instead, and the rest is left to xdotool. Nothing is typed while a key
is down (`xheld`): a grabbed hotkey would receive it; text goes out in chunks, each checked.
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


# Typed a chunk at a time (xdotool types ~12 ms a key), each after checking that no key is down:
# a key pressed while a long final is being typed takes at most the rest of one chunk.
CHUNK_CHARS = 16
_WORDS = re.compile(r"\S*\s*")


def chunks(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """`text` in pieces of about `size` characters, cut after whitespace where a word allows."""
    out: list[str] = []
    for word in _WORDS.findall(text):
        while len(word) > size:  # a long word (or a CJK run) is cut anywhere
            out.append(word[:size])
            word = word[size:]
        if out and len(out[-1]) + len(word) <= size:
            out[-1] += word
        elif word:
            out.append(word)
    return out


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

    def _type(self, text: str) -> None:
        """`xdotool type` a chunk at a time, each once no key is down (see xheld)."""
        for chunk in chunks(text):
            if self._held is not None:
                self._held.wait_released()
            # --clearmodifiers: a modifier the user still holds must not change what is typed
            run_tool([self.exe, "type", "--clearmodifiers", "--", chunk])

    def type_text(self, text: str) -> None:
        if self._keymap is not None:
            for segment in self._keymap.segments(text):
                self._keymap.bind(segment)
                self._type(segment)
                self._keymap.typed()
            return
        for i, run in enumerate(_LATIN1_CAPITALS.split(text)):
            if i % 2:
                if self._held is not None:
                    self._held.wait_released()
                keys = [f"shift+U{ord(ch):04X}" for ch in run]
                run_tool([self.exe, "key", "--clearmodifiers", "--", *keys])
            elif run:
                self._type(run)

    def backspace(self, count: int) -> None:
        for done in range(0, count, CHUNK_CHARS):
            if self._held is not None:
                self._held.wait_released()
            repeat = str(min(CHUNK_CHARS, count - done))
            run_tool([self.exe, "key", "--clearmodifiers", "--repeat", repeat, "--", "BackSpace"])

    def close(self) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None
        if self._keymap is not None:
            self._keymap.close()
            self._keymap = None
