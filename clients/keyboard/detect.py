"""Which backend types in this session: the first that works, in the order the session suggests.

macOS: Quartz, then osascript. Wayland (XDG_SESSION_TYPE=wayland or WAYLAND_DISPLAY): wtype, then
ydotool (then xdotool, which reaches X11 apps under XWayland only). X11 (XDG_SESSION_TYPE=x11 or
DISPLAY): xdotool. Nothing else: ydotool, which needs no display.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping

from . import osascript, quartz, wtype, xdotool, ydotool
from .backend import Backend, BackendUnavailable

log = logging.getLogger(__name__)

BACKENDS: dict[str, Callable[[], Backend]] = {
    quartz.NAME: quartz.QuartzBackend,
    osascript.NAME: osascript.OsascriptBackend,
    xdotool.NAME: xdotool.XdotoolBackend,
    wtype.NAME: wtype.WtypeBackend,
    ydotool.NAME: ydotool.YdotoolBackend,
}


def candidates(env: Mapping[str, str] | None = None, platform: str | None = None) -> list[str]:
    """Backend names to try, best first, for this session."""
    env = os.environ if env is None else env
    platform = platform or sys.platform
    if platform == "darwin":
        return [quartz.NAME, osascript.NAME]
    session = env.get("XDG_SESSION_TYPE", "").lower()
    if session == "wayland" or (session != "x11" and env.get("WAYLAND_DISPLAY")):
        return [wtype.NAME, ydotool.NAME, xdotool.NAME]
    if session == "x11" or env.get("DISPLAY"):
        return [xdotool.NAME]
    return [ydotool.NAME]


def choose(name: str | None = None) -> Backend:
    """The named backend, or the first candidate that works; BackendUnavailable says why not."""
    if name is not None:
        if name not in BACKENDS:
            raise ValueError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
        return BACKENDS[name]()
    reasons = []
    for candidate in candidates():
        try:
            backend = BACKENDS[candidate]()
        except BackendUnavailable as exc:
            reasons.append(f"{candidate}: {exc}")
            continue
        log.info("typing with %s", candidate)
        return backend
    raise BackendUnavailable("no way to type in this session:\n  " + "\n  ".join(reasons))
