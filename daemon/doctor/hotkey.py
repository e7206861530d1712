"""Hotkey check: can `dictated-hotkey` listen for a key in this session, and if not, what to do.

Optional: someone who does not use the hotkey gets a skip, never a failure. macOS needs the Input
Monitoring and Accessibility permissions for the program that runs dictated-hotkey (read here
without prompting; granted per app: the terminal, or Python itself for a login service). X11
needs python-xlib and a display; Wayland allows no global grab, so evdev (the `input` group) or
the compositor's own bindings. The daemon does not import the client: the probes are repeated,
but the session is judged by the one rule the client uses too (clients/hotkey/session.py).
"""

from __future__ import annotations

import glob
import os
import platform
import sys
from collections.abc import Iterator, Mapping

from ..clients.hotkey.session import INPUT_GROUP_FIX, session
from ..install_hint import pip_install_extra
from .result import OK, SKIP, WARN, CheckResult, DoctorContext

NAME = "hotkey"
DOCS = "docs/hotkey.md"


def check_hotkey(
    context: DoctorContext, env: Mapping[str, str] | None = None
) -> Iterator[CheckResult]:
    env = os.environ if env is None else env
    where = session(env, "darwin" if platform.system() == "Darwin" else "linux")
    if where == "darwin":
        yield _macos()
    elif where == "wayland":
        yield _evdev("Wayland", missing=SKIP)
    elif where == "x11":
        yield _x11(env.get("DISPLAY", ""))
    else:
        yield _evdev("no graphical session", missing=SKIP, denied=SKIP)


def _macos() -> CheckResult:
    try:
        import pynput  # noqa: F401
        from ApplicationServices import AXIsProcessTrusted
        from Quartz import CGPreflightListenEventAccess
    except ImportError:
        return CheckResult(
            NAME,
            SKIP,
            "pynput is not installed (dictated-hotkey is optional)",
            fix=pip_install_extra("hotkey"),
        )
    missing = [
        name
        for name, granted in (
            ("Input Monitoring", CGPreflightListenEventAccess()),
            ("Accessibility", AXIsProcessTrusted()),
        )
        if not granted
    ]
    if missing:
        return CheckResult(
            NAME,
            WARN,
            f"dictated-hotkey would see no key: no {' or '.join(missing)} permission here",
            fix=(
                f"System Settings › Privacy & Security › {' and '.join(missing)}: allow your "
                f"terminal (for a login service: {sys.executable}), then restart dictated-hotkey"
            ),
            details={"missing": missing},
        )
    return CheckResult(NAME, OK, "Input Monitoring and Accessibility are granted here")


def _x11(display: str) -> CheckResult:
    try:
        from Xlib import display as xdisplay
        from Xlib import error as xerror
    except ImportError:
        return CheckResult(
            NAME,
            SKIP,
            "python-xlib is not installed (dictated-hotkey is optional)",
            fix=pip_install_extra("hotkey"),
        )
    try:
        xdisplay.Display().close()
    except (xerror.DisplayError, xerror.ConnectionClosedError, OSError) as exc:
        return CheckResult(
            NAME,
            WARN,
            f"cannot open the X display {display!r}: {exc}",
            fix="run it inside your desktop session (DISPLAY set, xhost allows you)",
        )
    return CheckResult(NAME, OK, f"X11 ({display}): dictated-hotkey can grab a key")


def _evdev(where: str, missing: str, denied: str = WARN) -> CheckResult:
    bindings = f"bind a key in your compositor to `dictated ptt press/release` ({DOCS})"
    try:
        import evdev  # noqa: F401
    except ImportError:
        return CheckResult(
            NAME,
            missing,
            f"{where}: python-evdev is not installed; {bindings}",
            fix=pip_install_extra("hotkey"),
        )
    devices = sorted(glob.glob("/dev/input/event*"))
    readable = [d for d in devices if os.access(d, os.R_OK)]
    if not readable:
        summary = (
            f"{where}: no permission to read the {len(devices)} input device(s)"
            if devices
            else f"{where}: no input device in /dev/input"
        )
        fix = f"{INPUT_GROUP_FIX}; or {bindings}" if devices else bindings
        return CheckResult(NAME, denied if devices else SKIP, summary, fix=fix)
    return CheckResult(
        NAME,
        OK,
        f"{where}: evdev reads {len(readable)} input device(s) (dictated-hotkey --backend evdev)",
    )
