"""X11: a passive grab (XGrabKey) on the root window, through python-xlib (pynput's X11 library).

A grab, not an observer: the key reaches dictated-hotkey only, so F9 does not also type an escape
sequence into the terminal that has focus (pynput's X11 listener records every key and grabs
none). The grab is made for the combination's modifiers with and without Caps Lock and Num Lock,
which X counts as modifiers too. X repeats a held key as a release and a press with the same
timestamp; such a pair is dropped, so a held key is one down and one up.
"""

from __future__ import annotations

import os

from .backend import HotkeyUnavailable, Sink, StopPipe
from .keys import BadKey, KeyCombo

NAME = "x11"
#: pynput key names -> X keysym names, where they differ beyond capitalisation
KEYSYMS = {
    "enter": "Return",
    "esc": "Escape",
    "backspace": "BackSpace",
    "page_up": "Prior",
    "page_down": "Next",
    "print_screen": "Print",
    "ctrl_l": "Control_L",
    "ctrl_r": "Control_R",
    "cmd": "Super_L",
    "cmd_l": "Super_L",
    "cmd_r": "Super_R",
}
REPEAT_WAIT_S = 0.02  # the press of an auto-repeat pair follows its release at once


def _xlib():
    try:
        from Xlib import XK, X, display, error
    except ImportError as exc:
        raise HotkeyUnavailable(
            "python-xlib is not installed (it comes with pynput: pip install pynput)"
        ) from exc
    return X, XK, display, error


class X11Listener:
    name = NAME

    def __init__(self, combo: KeyCombo):
        X, XK, display, error = _xlib()
        if not os.environ.get("DISPLAY"):
            raise HotkeyUnavailable("no X display (DISPLAY is not set)")
        try:
            self._display = display.Display()
        except (error.DisplayError, error.ConnectionClosedError, OSError) as exc:
            raise HotkeyUnavailable(
                f"cannot open the X display {os.environ['DISPLAY']}: {exc}"
            ) from exc
        self._X = X
        self._root = self._display.screen().root
        keysym = self._keysym(XK, combo.key)
        self._keycode = self._display.keysym_to_keycode(keysym)
        if not self._keycode:
            raise BadKey(f"no key on this keyboard makes {combo.key!r}")
        masks = {"ctrl": X.ControlMask, "alt": X.Mod1Mask, "shift": X.ShiftMask, "cmd": X.Mod4Mask}
        base = 0
        for modifier in combo.modifiers:
            base |= masks[modifier]
        self._masks = [base | lock for lock in (0, X.LockMask, X.Mod2Mask, X.LockMask | X.Mod2Mask)]
        self._grab(error, combo)
        self._stop = StopPipe()

    @staticmethod
    def _keysym(XK, key: str) -> int:
        base = KEYSYMS.get(key, key)
        for name in dict.fromkeys((base, base.capitalize(), base.upper(), base.title())):
            keysym = XK.string_to_keysym(name)
            if keysym:
                return keysym
        raise BadKey(
            f"X11 has no key named {key!r} (examples: F9, Pause, Scroll_Lock, ctrl_r, space)"
        )

    def _grab(self, error, combo: KeyCombo) -> None:
        X = self._X
        catch = error.CatchError(error.BadAccess)
        for mask in self._masks:
            self._root.grab_key(
                self._keycode, mask, True, X.GrabModeAsync, X.GrabModeAsync, onerror=catch
            )
        self._display.sync()
        if catch.get_error():
            self._ungrab()
            self._display.close()
            raise HotkeyUnavailable(
                f"{combo} is already taken by another program on this display; choose another --key"
            )

    def _ungrab(self) -> None:
        for mask in self._masks:
            self._root.ungrab_key(self._keycode, mask)
        self._display.sync()

    def run(self, sink: Sink) -> None:
        X, d = self._X, self._display
        fd = d.fileno()
        pending = None  # an event read ahead of its turn
        while True:
            if pending is None and not d.pending_events() and not self._stop.wait([fd]):
                return
            event, pending = pending or d.next_event(), None
            if getattr(event, "detail", None) != self._keycode:
                continue
            if event.type == X.KeyPress:
                sink.down()
            elif event.type == X.KeyRelease:
                if d.pending_events() or self._stop.wait([fd], REPEAT_WAIT_S):
                    pending = d.next_event()
                    if (
                        pending.type == X.KeyPress
                        and getattr(pending, "detail", None) == self._keycode
                        and pending.time == event.time
                    ):
                        pending = None  # auto-repeat: neither up nor down
                        continue
                sink.up()

    def stop(self) -> None:
        self._stop.stop()

    def close(self) -> None:
        try:
            self._ungrab()
        finally:
            self._display.close()
            self._stop.close()
