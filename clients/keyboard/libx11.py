"""libX11 through ctypes, for the little the xdotool backend asks of X itself (spare keycodes,
held keys): no Python X library needed where xdotool runs."""

from __future__ import annotations

import ctypes
import ctypes.util


def load() -> ctypes.CDLL:
    """libX11 with XOpenDisplay/XCloseDisplay/XSync typed; OSError when it is not installed."""
    name = ctypes.util.find_library("X11")
    if name is None:
        raise OSError("libX11 not found")
    x = ctypes.CDLL(name)
    x.XOpenDisplay.restype = ctypes.c_void_p
    x.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x.XCloseDisplay.argtypes = [ctypes.c_void_p]
    x.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return x


def open_display(x: ctypes.CDLL) -> int:
    """A connection to $DISPLAY; OSError when there is none."""
    display = x.XOpenDisplay(None)
    if not display:
        raise OSError("cannot open the X display")
    return display
