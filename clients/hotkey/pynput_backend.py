"""pynput: the key on macOS (a Quartz event tap), or on X11 as an observer (no grab).

macOS asks for the Input Monitoring permission (and Accessibility) for the program that runs
this: the terminal, or Python itself for a login service; without it the tap sees no key at all,
which pynput cannot tell apart from no key being pressed: `dictated doctor` checks it. On X11 the
key also reaches the focused window (use the `x11` backend, which grabs it).
"""

from __future__ import annotations

import sys
import threading

from .backend import HotkeyUnavailable, Sink
from .keys import BadKey, KeyCombo

NAME = "pynput"


def _keyboard():
    try:
        from pynput import keyboard
    except ImportError as exc:
        if "pynput" in str(exc) and "No module" in str(exc):
            raise HotkeyUnavailable(
                f"pynput is not installed: {sys.executable} -m pip install pynput"
            ) from exc
        raise HotkeyUnavailable(f"pynput cannot work here: {exc}") from exc
    return keyboard


class PynputListener:
    name = NAME

    def __init__(self, combo: KeyCombo):
        keyboard = _keyboard()
        self._key = self._resolve(keyboard, combo.key)
        self._mods = combo.modifiers
        self._held: set[str] = set()
        self._sink: Sink | None = None  # keys before run() are nobody's
        self._done = threading.Event()
        self._listener = keyboard.Listener(on_press=self._on_press, on_release=self._on_release)
        self._listener.start()
        self._listener.wait()  # listening once this returns: the caller may say so

    @staticmethod
    def _resolve(keyboard, key: str):
        if len(key) == 1:
            return keyboard.KeyCode.from_char(key)
        try:
            return keyboard.Key[key]
        except KeyError:
            raise BadKey(
                f"pynput has no key named {key!r} (examples: f9, pause, ctrl_r, space)"
            ) from None

    def _modifier(self, key) -> str | None:
        name = getattr(key, "name", None) or ""
        for modifier in ("ctrl", "alt", "shift", "cmd"):
            if name == modifier or name.startswith(modifier + "_"):
                return modifier
        return None

    def _same(self, key) -> bool:
        canonical = self._listener.canonical
        return canonical(key) == canonical(self._key)

    def _on_press(self, key) -> None:
        modifier = self._modifier(key)
        if modifier:
            self._held.add(modifier)
        if self._sink and self._same(key) and self._mods <= self._held:
            self._sink.down()

    def _on_release(self, key) -> None:
        modifier = self._modifier(key)
        if modifier:
            self._held.discard(modifier)
        if self._sink and self._same(key):
            self._sink.up()

    def run(self, sink: Sink) -> None:
        self._sink = sink
        while not self._done.wait(0.5):
            if not self._listener.is_alive():
                raise HotkeyUnavailable("pynput's keyboard listener stopped")

    def stop(self) -> None:
        self._done.set()

    def close(self) -> None:
        self._listener.stop()
