"""X11: `xdotool type`, which maps each character (unicode too) to a keystroke in the focused window.

One xdotool bug is worked around: an uppercase Latin-1 letter (À-Þ) that the keyboard map lacks
is bound to a spare key whose X case rules make it lowercase, so `type "Å"` gives "å". Those
letters are pressed as Shift plus their keysym instead, which is right with or without them on
the map.
"""

from __future__ import annotations

import os
import re

from .backend import BackendUnavailable, find_tool, run_tool

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

    def type_text(self, text: str) -> None:
        # --clearmodifiers: a key the user still holds (Shift, Ctrl) must not change what is typed
        for i, run in enumerate(_LATIN1_CAPITALS.split(text)):
            if i % 2:
                keys = [f"shift+U{ord(ch):04X}" for ch in run]
                run_tool([self.exe, "key", "--clearmodifiers", "--", *keys])
            elif run:
                run_tool([self.exe, "type", "--clearmodifiers", "--", run])

    def backspace(self, count: int) -> None:
        if count > 0:
            run_tool(
                [self.exe, "key", "--clearmodifiers", "--repeat", str(count), "--", "BackSpace"]
            )
