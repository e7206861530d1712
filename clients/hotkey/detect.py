"""Which backend listens in this session.

macOS: pynput. X11 (XDG_SESSION_TYPE=x11, or DISPLAY without WAYLAND_DISPLAY): the x11 grab,
then evdev. Wayland: no program may grab a key there (compositors do not allow it), so evdev when
/dev/input can be read, else an error pointing to the compositor's own key bindings.
"""

from __future__ import annotations

from . import evdev_backend, pynput_backend, x11
from .backend import DOCS, HotkeyUnavailable, Listener
from .keys import KeyCombo
from .session import session

BACKENDS = ("auto", x11.NAME, pynput_backend.NAME, evdev_backend.NAME)
__all__ = ["BACKENDS", "candidates", "choose", "create", "session"]  # session: the doctor's too


def candidates(where: str) -> list[str]:
    """Backend names to try, best first."""
    return {
        "darwin": [pynput_backend.NAME],
        "x11": [x11.NAME, evdev_backend.NAME],
        "wayland": [evdev_backend.NAME],
        "console": [evdev_backend.NAME],
    }[where]


def create(name: str, combo: KeyCombo) -> Listener:
    if name == x11.NAME:
        return x11.X11Listener(combo)
    if name == pynput_backend.NAME:
        return pynput_backend.PynputListener(combo)
    if name == evdev_backend.NAME:
        return evdev_backend.EvdevListener(combo)
    raise ValueError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")


def choose(name: str, combo: KeyCombo) -> Listener:
    """The named backend, or the first that works here; HotkeyUnavailable says why none does."""
    if name != "auto":
        return create(name, combo)
    where = session()
    reasons = []
    for candidate in candidates(where):
        try:
            return create(candidate, combo)
        except HotkeyUnavailable as exc:
            reasons.append(f"{candidate}: {exc}")
    message = "no way to listen for a key in this session:\n  " + "\n  ".join(reasons)
    if where == "wayland":
        message += (
            "\nWayland lets no program grab a key: bind one in your compositor or desktop to "
            f"`dictated ptt press` / `dictated ptt release` (see {DOCS}), or make evdev work"
        )
    raise HotkeyUnavailable(message)
