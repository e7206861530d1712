"""What kind of session a global key is wanted in, said once for `dictated-hotkey` (which picks its
backend by it) and `dictated doctor` (which checks that backend): both must agree, so a doctor's
"ok" means the client works."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Literal

Session = Literal["darwin", "wayland", "x11", "console"]

#: what lets evdev read /dev/input: the client's error and the doctor's fix say the same
INPUT_GROUP_FIX = (
    "add yourself to the `input` group (sudo usermod -aG input $USER), then log out and back in"
)


def session(env: Mapping[str, str] | None = None, platform: str | None = None) -> Session:
    """`darwin`, `wayland`, `x11` or `console` (XDG_SESSION_TYPE, else the display variables)."""
    env = os.environ if env is None else env
    if (platform or sys.platform) == "darwin":
        return "darwin"
    kind = env.get("XDG_SESSION_TYPE", "").lower()
    if kind == "wayland" or (kind != "x11" and env.get("WAYLAND_DISPLAY")):
        return "wayland"
    if kind == "x11" or env.get("DISPLAY"):
        return "x11"
    return "console"
