"""evdev: the key read from /dev/input, on any Linux session (Wayland, X11, a console).

Needs python-evdev (`pip install evdev`; it comes with pynput on Linux) and read access to the
keyboards' /dev/input/event* files, which the `input` group has. It observes, it does not grab:
the key still reaches the focused window, so choose one no application uses (Pause, Scroll Lock,
F13, the right Ctrl). Keyboards plugged in later are not seen until a restart.
"""

from __future__ import annotations

import glob
import os
import sys

from .backend import HotkeyUnavailable, Sink, StopPipe
from .keys import BadKey, KeyCombo
from .session import INPUT_GROUP_FIX

NAME = "evdev"
#: pynput key names -> the evdev KEY_ code name, where upper-casing is not enough
CODES = {
    "ctrl_l": "LEFTCTRL",
    "ctrl_r": "RIGHTCTRL",
    "alt_l": "LEFTALT",
    "alt_r": "RIGHTALT",
    "alt_gr": "RIGHTALT",
    "shift_l": "LEFTSHIFT",
    "shift_r": "RIGHTSHIFT",
    "cmd": "LEFTMETA",
    "cmd_l": "LEFTMETA",
    "cmd_r": "RIGHTMETA",
    "page_up": "PAGEUP",
    "page_down": "PAGEDOWN",
    "scroll_lock": "SCROLLLOCK",
    "caps_lock": "CAPSLOCK",
    "num_lock": "NUMLOCK",
    "print_screen": "SYSRQ",
    "menu": "COMPOSE",
}
MODIFIER_CODES = {
    "ctrl": ("KEY_LEFTCTRL", "KEY_RIGHTCTRL"),
    "alt": ("KEY_LEFTALT", "KEY_RIGHTALT"),
    "shift": ("KEY_LEFTSHIFT", "KEY_RIGHTSHIFT"),
    "cmd": ("KEY_LEFTMETA", "KEY_RIGHTMETA"),
}


def _evdev():
    try:
        import evdev
    except ImportError as exc:
        raise HotkeyUnavailable(
            f"python-evdev is not installed: {sys.executable} -m pip install evdev "
            "(needs a C compiler and the Python headers; or the prebuilt `evdev-binary`)"
        ) from exc
    return evdev


def open_keyboards(code: int, paths: list[str] | None = None) -> list:
    """Every input device that has `code`; HotkeyUnavailable when none can be read, naming why."""
    evdev = _evdev()
    paths = sorted(glob.glob("/dev/input/event*")) if paths is None else paths
    devices, denied = [], []
    for path in paths:
        try:
            device = evdev.InputDevice(path)
        except PermissionError:
            denied.append(path)
            continue
        except OSError:
            continue  # unplugged while we looked
        if code in device.capabilities().get(evdev.ecodes.EV_KEY, []):
            devices.append(device)
        else:
            device.close()
    if devices:
        return devices
    if denied:
        raise HotkeyUnavailable(
            f"no permission to read {len(denied)} input device(s) in /dev/input "
            f"(e.g. {denied[0]}): {INPUT_GROUP_FIX}"
        )
    raise HotkeyUnavailable("no keyboard with that key was found in /dev/input")


class EvdevListener:
    name = NAME

    def __init__(self, combo: KeyCombo, paths: list[str] | None = None):
        evdev = _evdev()
        self._ecodes = evdev.ecodes
        name = "KEY_" + CODES.get(combo.key, combo.key.upper())
        code = evdev.ecodes.ecodes.get(name)
        if code is None:
            raise BadKey(f"evdev has no key named {combo.key!r} ({name}); e.g. f9, pause, ctrl_r")
        self._code = code
        self._mods = {
            m: {evdev.ecodes.ecodes[c] for c in MODIFIER_CODES[m]} for m in combo.modifiers
        }
        self._devices = open_keyboards(code, paths)
        self._stop = StopPipe()

    def run(self, sink: Sink) -> None:
        by_fd = {device.fd: device for device in self._devices}
        pressed: set[int] = set()
        while by_fd:
            for fd in self._stop.wait(list(by_fd)):
                try:
                    events = list(by_fd[fd].read())
                except OSError:  # unplugged
                    by_fd.pop(fd).close()
                    continue
                for event in events:
                    if event.type != self._ecodes.EV_KEY or event.value == 2:  # 2: auto-repeat
                        continue
                    (pressed.add if event.value else pressed.discard)(event.code)
                    if event.code != self._code:
                        continue
                    if event.value == 0:
                        sink.up()
                    elif all(codes & pressed for codes in self._mods.values()):
                        sink.down()
            if self._stop.stopped:
                return
        raise HotkeyUnavailable("every keyboard with that key went away")

    def stop(self) -> None:
        self._stop.stop()

    def close(self) -> None:
        for device in self._devices:
            device.close()
        self._stop.close()


def readable() -> bool:
    """Whether any /dev/input event device can be opened here (for auto-detection)."""
    return any(os.access(p, os.R_OK) for p in glob.glob("/dev/input/event*"))
