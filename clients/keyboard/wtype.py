"""Wayland: `wtype`, through the compositor's virtual-keyboard protocol (wlroots, KDE)."""

from __future__ import annotations

import os

from .backend import BackendUnavailable, find_tool, run_tool

NAME = "wtype"
INSTALL = "sudo apt install wtype, sudo dnf install wtype, or pacman -S wtype"
_KEYS_PER_CALL = 200  # keeps the argument vector short


class WtypeBackend:
    name = NAME

    def __init__(self) -> None:
        if not os.environ.get("WAYLAND_DISPLAY"):
            raise BackendUnavailable("wtype needs a Wayland session and WAYLAND_DISPLAY is not set")
        self.exe = find_tool("wtype", INSTALL)

    def type_text(self, text: str) -> None:
        run_tool([self.exe, "--", text])

    def backspace(self, count: int) -> None:
        while count > 0:
            batch = min(count, _KEYS_PER_CALL)
            run_tool([self.exe, *["-k", "BackSpace"] * batch])
            count -= batch

    def close(self) -> None:
        pass
