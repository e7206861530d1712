"""`dictated doctor`'s hotkey check: what dictated-hotkey needs in this session, never a failure.

X11 against a real Xvfb (and a display that is not there); Wayland's input-group and macOS's
permission answers through stand-ins for what this machine lacks (/dev/input, macOS).
"""

from __future__ import annotations

import sys
import types

import pytest

from dictated.config import Config
from dictated.doctor import hotkey
from dictated.doctor.result import OK, SKIP, WARN, DoctorContext
from tests.xsession import XSession

CONTEXT = DoctorContext(Config())


def only(env: dict) -> hotkey.CheckResult:
    (result,) = hotkey.check_hotkey(CONTEXT, env)
    return result


def test_x11_grabs_on_a_real_display_and_names_a_missing_one(tmp_path, monkeypatch):
    session = XSession(tmp_path)
    try:
        monkeypatch.setenv("DISPLAY", session.display)
        result = only({"DISPLAY": session.display})
        assert result.status == OK and "can grab a key" in result.summary
    finally:
        session.close()
    monkeypatch.setenv("DISPLAY", ":9876")
    result = only({"DISPLAY": ":9876", "XDG_SESSION_TYPE": "x11"})
    assert result.status == WARN and "cannot open the X display ':9876'" in result.summary


def test_wayland_says_the_input_group_or_the_compositor_bindings(monkeypatch):
    wayland = {"WAYLAND_DISPLAY": "wayland-0"}
    monkeypatch.setattr(hotkey.glob, "glob", lambda pattern: [])
    result = only(wayland)
    assert result.status == SKIP and "docs/hotkey.md" in result.fix
    monkeypatch.setattr(hotkey.glob, "glob", lambda pattern: ["/dev/input/event3"])
    monkeypatch.setattr(hotkey.os, "access", lambda path, mode: False)
    result = only(wayland)
    assert result.status == WARN and "no permission to read the 1 input device" in result.summary
    assert "usermod -aG input" in result.fix and "dictated ptt press/release" in result.fix
    monkeypatch.setattr(hotkey.os, "access", lambda path, mode: True)
    assert only(wayland).status == OK
    assert only({}).status == OK  # a console reads it too


@pytest.mark.parametrize(("monitoring", "accessibility"), [(False, True), (True, False)])
def test_macos_names_the_missing_permission(monkeypatch, monitoring, accessibility):
    monkeypatch.setattr(hotkey.platform, "system", lambda: "Darwin")
    quartz = types.SimpleNamespace(CGPreflightListenEventAccess=lambda: monitoring)
    services = types.SimpleNamespace(AXIsProcessTrusted=lambda: accessibility)
    monkeypatch.setitem(sys.modules, "pynput", types.ModuleType("pynput"))
    monkeypatch.setitem(sys.modules, "Quartz", quartz)
    monkeypatch.setitem(sys.modules, "ApplicationServices", services)
    result = only({})
    missing = "Input Monitoring" if not monitoring else "Accessibility"
    assert result.status == WARN and f"no {missing} permission" in result.summary
    assert f"Privacy & Security › {missing}" in result.fix and sys.executable in result.fix
    monkeypatch.setitem(
        sys.modules, "Quartz", types.SimpleNamespace(CGPreflightListenEventAccess=lambda: True)
    )
    monkeypatch.setitem(
        sys.modules, "ApplicationServices", types.SimpleNamespace(AXIsProcessTrusted=lambda: True)
    )
    assert only({}).status == OK
