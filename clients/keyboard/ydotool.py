"""Wayland (any compositor) and the console: `ydotool`, through the kernel's uinput device.

It needs its daemon (`ydotoold`) and access to /dev/uinput. ydotool 1.x names keys by Linux
key code ("14:1 14:0" presses and releases BackSpace); 0.1.x takes key names and `--repeat`.
"""

from __future__ import annotations

from .backend import TypingFailed, find_tool, run_tool

NAME = "ydotool"
INSTALL = "sudo apt install ydotool (then start ydotoold), or your distribution's ydotool package"
_KEY_BACKSPACE = 14  # linux/input-event-codes.h
_KEYS_PER_CALL = 200


class YdotoolBackend:
    name = NAME

    def __init__(self) -> None:
        self.exe = find_tool("ydotool", INSTALL)

    def type_text(self, text: str) -> None:
        run_tool([self.exe, "type", "--", text])

    def backspace(self, count: int) -> None:
        while count > 0:
            batch = min(count, _KEYS_PER_CALL)
            try:
                run_tool([self.exe, "key", *[f"{_KEY_BACKSPACE}:1", f"{_KEY_BACKSPACE}:0"] * batch])
            except TypingFailed:  # ydotool 0.1.x
                run_tool([self.exe, "key", "--repeat", str(batch), "BackSpace"])
            count -= batch

    def close(self) -> None:
        pass
