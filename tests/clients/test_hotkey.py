"""dictated-hotkey: key combinations, the press/release logic, and the real client on Xvfb
driven by `xdotool keydown/keyup` against a fake control server (a real ZeroMQ REP socket)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from dictated.clients.control import CommandFailed, ControlClient, DaemonUnavailable
from dictated.clients.hotkey import detect
from dictated.clients.hotkey.keys import BadKey, KeyCombo, parse_combo
from dictated.clients.hotkey.trigger import Mode, Sender, Trigger
from dictated.protocol import CONTROL_SOCKET
from tests.clients.hotkey_fakes import FakeControl
from tests.xsession import open_session

HOTKEY = [sys.executable, "-m", "dictated.clients.hotkey.cli"]


@pytest.fixture
def xsession(tmp_path):
    yield from open_session(tmp_path)


@pytest.fixture
def control(isolated_env):
    fake = FakeControl(f"ipc://{isolated_env['DICTATED_RUNTIME_DIR']}/{CONTROL_SOCKET}")
    yield fake
    fake.close()


def test_key_combinations_in_every_spelling():
    assert parse_combo("F9") == KeyCombo("f9")
    assert parse_combo("ctrl+alt+space") == KeyCombo("space", frozenset({"ctrl", "alt"}))
    assert parse_combo("<ctrl>+<alt>+d") == KeyCombo("d", frozenset({"ctrl", "alt"}))
    assert parse_combo("Super+Shift+Return") == KeyCombo("enter", frozenset({"cmd", "shift"}))
    assert parse_combo("Control_R") == KeyCombo("ctrl_r")
    assert parse_combo("Scroll_Lock") == KeyCombo("scroll_lock")
    for bad in ("", "ctrl+", "hyperdrive+f9"):
        with pytest.raises(BadKey):
            parse_combo(bad)


class Recorder:
    """A daemon in miniature: it owns `held` and resolves a `toggle` itself (unless `old`)."""

    def __init__(self, down: bool = False, old: bool = False):
        self.actions: list[str] = []  # what each request did: press or release
        self.sent: list[str] = []
        self.down, self.old, self.held = down, old, False

    def request(self, cmd: str, **args):
        if self.down:
            raise DaemonUnavailable("no dictated daemon is running")
        action = args["action"]
        self.sent.append(action)
        assert isinstance(args["at"], float)  # when the key moved
        if action == "toggle" and not self.old:
            action = "release" if self.held else "press"
        if action == "toggle":
            raise CommandFailed("""'action' must be one of "press", "release", got 'toggle'""")
        self.actions.append(action)
        self.held = action == "press"
        return {"held": self.held, "mode": "push-to-talk"}


def run_trigger(mode: Mode, keys: str, requester: Recorder) -> list[str]:
    """Feed `keys` (d: down, u: up) through a Trigger; the actions the daemon received."""
    sender = Sender(requester)
    sender.start()
    trigger = Trigger(mode, sender)
    for key in keys:
        trigger.down() if key == "d" else trigger.up()
    trigger.finish()
    sender.close()
    return requester.actions


def test_hold_sends_one_press_per_hold_whatever_the_auto_repeat():
    assert run_trigger(Mode.HOLD, "ddddu", Recorder()) == ["press", "release"]
    assert run_trigger(Mode.HOLD, "dudu", Recorder()) == ["press", "release"] * 2
    assert run_trigger(Mode.HOLD, "ddd", Recorder()) == ["press", "release"]  # exit releases


def test_toggle_alternates_on_each_fresh_press():
    taps = run_trigger(Mode.TOGGLE, "dddududu", Recorder())
    assert taps == ["press", "release", "press", "release"]  # the last: at exit, let go
    assert run_trigger(Mode.TOGGLE, "dudu", Recorder()) == ["press", "release"]  # nothing owed


def test_toggle_asks_the_daemon_which_way_so_a_hold_ended_elsewhere_never_inverts_a_tap(
    control,
):
    """Tap on; the hold is ended elsewhere (`dictated ptt release`, a daemon restart); the next
    tap is meant to START talking, and does: the daemon, which owns `held`, resolves it."""
    sender = Sender(ControlClient(control.endpoint))
    sender.start()
    trigger = Trigger(Mode.TOGGLE, sender)
    trigger.down(), trigger.up()
    assert control.wait_for(1) == ["press"]
    ControlClient(control.endpoint).request("ptt", action="release")  # from elsewhere
    trigger.down(), trigger.up()
    assert control.wait_for(3) == ["press", "release", "press"] and control.held
    trigger.finish()
    sender.close()
    assert control.sent() == ["toggle", "release", "toggle", "release"]  # at exit: let go


def test_toggle_against_an_older_daemon_decides_the_tap_itself():
    recorder = Recorder(old=True)
    assert run_trigger(Mode.TOGGLE, "dudu", recorder) == ["press", "release"]
    assert recorder.sent == ["toggle", "press", "release"]  # refused once, then press/release


def test_an_absent_daemon_is_no_failure():
    recorder = Recorder(down=True)
    assert run_trigger(Mode.TOGGLE, "dudu", recorder) == []  # both taps tried, neither fatal


def test_sessions_pick_their_backend():
    assert detect.session({}, "darwin") == "darwin"
    assert detect.session({"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}, "linux") == "wayland"
    assert detect.session({"XDG_SESSION_TYPE": "x11", "WAYLAND_DISPLAY": "w"}, "linux") == "x11"
    assert detect.session({"DISPLAY": ":1"}, "linux") == "x11"
    assert detect.candidates("x11") == ["x11", "evdev"]
    assert detect.candidates("wayland") == ["evdev"]


def start_hotkey(env: dict, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [*HOTKEY, *args], env=env, stderr=subprocess.PIPE, text=True, stdout=subprocess.DEVNULL
    )
    for line in proc.stderr:  # it grabs the key before it says how to use it
        if "to talk" in line:
            proc.ready_line = line  # type: ignore[attr-defined]
            return proc
    raise AssertionError(f"dictated-hotkey exited: {proc.wait()}")


def stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return err


def test_holding_f9_sends_one_press_and_one_release_and_the_key_reaches_no_window(
    isolated_env, xsession, control
):
    """Held for 1.5 s, X auto-repeats F9 (release/press pairs): still one press, one release;
    the key is grabbed, so the focused xterm never sees it (no escape sequence typed)."""
    hotkey = start_hotkey({**isolated_env, **xsession.env})
    try:
        xsession.xdotool("keydown", "F9")
        assert control.wait_for(1) == ["press"]
        time.sleep(1.5)  # long enough for X to auto-repeat the key
        xsession.xdotool("keyup", "F9")
        assert control.wait_for(2) == ["press", "release"]
        xsession.xdotool("type", "after")
        assert xsession.read_back(1) == "after"
        assert control.ptt() == ["press", "release"]
    finally:
        stop(hotkey)
    assert "hold f9 to talk (x11 backend)" in hotkey.ready_line


def test_toggle_with_modifiers_taps_to_start_and_to_stop(isolated_env, xsession, control):
    hotkey = start_hotkey({**isolated_env, **xsession.env}, "--toggle", "--key", "ctrl+alt+d")
    try:
        xsession.xdotool("key", "d")  # without the modifiers: not ours
        xsession.xdotool("key", "ctrl+alt+d")
        assert control.wait_for(1) == ["press"]
        xsession.xdotool("key", "ctrl+alt+d")
        assert control.wait_for(2) == ["press", "release"]
        assert control.sent() == ["toggle", "toggle"]  # the daemon decides which way
        assert xsession.read_back(1) == "d"
    finally:
        stop(hotkey)


def test_a_daemon_that_comes_later_or_restarts_is_waited_for(isolated_env, xsession):
    env = {**isolated_env, **xsession.env}
    hotkey = start_hotkey(env, "--key", "F8")
    endpoint = f"ipc://{isolated_env['DICTATED_RUNTIME_DIR']}/{CONTROL_SOCKET}"
    try:
        xsession.xdotool("key", "F8")  # nothing runs: said, not fatal
        time.sleep(0.5)
        assert hotkey.poll() is None
        for _ in range(2):  # a daemon starts, then another (a restart)
            fake = FakeControl(endpoint)
            try:
                xsession.xdotool("key", "F8")
                assert fake.wait_for(2) == ["press", "release"]
            finally:
                fake.close()
                os.unlink(endpoint.removeprefix("ipc://"))
    finally:
        err = stop(hotkey)
    assert "no dictated daemon is running" in err and "the key does nothing until it runs" in err


def test_runtime_dir_finds_a_daemon_started_with_one(isolated_env, xsession, tmp_path):
    """`--runtime-dir`, as `dictated` takes it: a daemon run with its own socket directory."""
    elsewhere = tmp_path / "rt"
    elsewhere.mkdir(mode=0o700)
    fake = FakeControl(f"ipc://{elsewhere}/{CONTROL_SOCKET}")
    try:
        hotkey = start_hotkey({**isolated_env, **xsession.env}, "--runtime-dir", str(elsewhere))
        try:
            xsession.xdotool("key", "F9")
            assert fake.wait_for(2) == ["press", "release"]
        finally:
            stop(hotkey)
    finally:
        fake.close()


def run_hotkey(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*HOTKEY, *args], env=env, capture_output=True, text=True, timeout=30)


def test_wayland_without_evdev_points_to_the_compositor_bindings(isolated_env):
    env = {**isolated_env, "XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0"}
    env.pop("DISPLAY", None)
    done = run_hotkey(env)
    assert done.returncode == 2, done.stderr
    assert "evdev:" in done.stderr and "docs/hotkey.md" in done.stderr
    assert "`dictated ptt press` / `dictated ptt release`" in done.stderr


def test_bad_keys_and_taken_keys_are_clear_errors(isolated_env, xsession, control):
    env = {**isolated_env, **xsession.env}
    done = run_hotkey(env, "--key", "hyper+f9")
    assert done.returncode == 2 and "'hyper' in 'hyper+f9' is not a modifier" in done.stderr
    done = run_hotkey(env, "--key", "NoSuchKey")
    assert done.returncode == 2 and "X11 has no key named 'nosuchkey'" in done.stderr
    first = start_hotkey(env, "--key", "F7")
    try:
        done = run_hotkey(env, "--key", "F7")
        assert done.returncode == 2 and "f7 is already taken by another program" in done.stderr
    finally:
        stop(first)


def test_help_names_every_option(isolated_env):
    done = run_hotkey(isolated_env, "--help")
    assert done.returncode == 0, done.stderr
    for option in (
        "--key",
        "--hold",
        "--toggle",
        "--backend",
        "--channel",
        "--runtime-dir",
        "{auto,x11,pynput,evdev}",
    ):
        assert option in done.stdout


def test_an_old_daemon_without_push_to_talk_is_named(isolated_env, xsession):
    """A daemon that refuses `ptt` (it predates it): one clear line, and the client keeps running."""
    endpoint = f"ipc://{isolated_env['DICTATED_RUNTIME_DIR']}/{CONTROL_SOCKET}"
    old = FakeControl(endpoint, commands=("status",))
    hotkey = start_hotkey({**isolated_env, **xsession.env}, "--key", "F6")
    try:
        xsession.xdotool("key", "F6")
        deadline = time.monotonic() + 20
        while len(old.requests) < 3:  # status, press, release
            assert time.monotonic() < deadline, old.requests
            time.sleep(0.05)
        assert hotkey.poll() is None
    finally:
        err = stop(hotkey)
        old.close()
    assert "this daemon has no push-to-talk" in err and "update dictated" in err


def test_evdev_without_permission_names_the_input_group(tmp_path):
    """Another account cannot read an event device (0600 root, as /dev/input's are 0660
    root:input): the message says how to join the `input` group."""
    device = tmp_path / "event0"
    device.touch(mode=0o600)
    tmp_path.chmod(0o755)
    code = (
        "from dictated.clients.hotkey.evdev_backend import open_keyboards\n"
        f"open_keyboards(67, [{str(device)!r}])"
    )
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "no permission to read 1 input device(s)" in done.stderr
    assert "sudo usermod -aG input $USER" in done.stderr


def test_the_pynput_backend_hears_the_key_and_its_modifiers(isolated_env, xsession, control):
    """pynput's listener (macOS's backend) on X11, where it observes the keyboard (XRecord):
    the same presses and releases, modifiers matched, auto-repeat sending nothing more."""
    env = {**isolated_env, **xsession.env}
    hotkey = start_hotkey(env, "--backend", "pynput", "--key", "<ctrl>+<shift>+F5")
    try:
        xsession.xdotool("key", "F5")  # without the modifiers: not ours
        xsession.xdotool("keydown", "ctrl+shift+F5")
        assert control.wait_for(1) == ["press"]
        time.sleep(1.0)  # auto-repeat
        xsession.xdotool("keyup", "ctrl+shift+F5")
        assert control.wait_for(2) == ["press", "release"]
        time.sleep(0.3)
        assert control.ptt() == ["press", "release"]
    finally:
        stop(hotkey)
    assert "(pynput backend)" in hotkey.ready_line
