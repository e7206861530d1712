"""dictated-type: joining and spoken commands, backend choice, and real typing through xdotool on Xvfb."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from dictated.clients.keyboard import detect, osascript
from dictated.clients.keyboard.backend import BackendUnavailable
from dictated.clients.keyboard.cli import apply
from dictated.clients.keyboard.compose import (
    NEW_LINE,
    SCRATCH_THAT,
    Backspace,
    ComposeOptions,
    Composer,
    Type,
)
from dictated.clients.keyboard.xdotool import CHUNK_CHARS, XdotoolBackend, chunks
from dictated.clients.keyboard.xheld import HeldKeys
from dictated.clients.keyboard.xkeymap import KeymapBinder
from tests.daemon_proc import feed, start_daemon, wait_for_transcripts
from tests.dictation import command_speech
from tests.speech import SENTENCES
from tests.xsession import open_session

HOSTILE = (
    "-n --help",  # leading dashes: never an option of xdotool
    "it's \"quoted\" and 'single'",
    "back\\slash \\n \\\\ end",
    "$(touch /tmp/dictated-pwned) `touch /tmp/dictated-pwned` ${HOME} $HOME",
    "a; rm -rf / && echo x | cat > y < z &",
    "100% {braces} [brackets] <angle> #hash ~tilde *star ?q !bang",
    "unicode: é ü ß ñ ø Å Ω Ł 日本語 中文 한국어 — “curly” … ÀÉÎÕÜÞ",
    "emoji: 😀 🎉 👍",
)


@pytest.fixture
def xsession(tmp_path):
    yield from open_session(tmp_path)


def typed(composer: Composer, *texts: str, language: str = "en") -> list:
    return [action for text in texts for action in composer.feed(text, language)]


def test_utterances_join_with_one_space_and_none_before_punctuation():
    c = Composer()
    assert typed(c, "Hello world.", "How are you?", ", and you", "!") == [
        Type("Hello world."),
        Type(" How are you?"),
        Type(", and you"),
        Type("!"),
    ]
    assert typed(Composer(), " padded ", "(aside)", "next") == [
        Type("padded"),
        Type(" (aside)"),
        Type(" next"),
    ]


def test_japanese_and_chinese_join_without_spaces():
    assert typed(Composer(), "こんにちは。", "元気です。", language="ja") == [
        Type("こんにちは。"),
        Type("元気です。"),
    ]
    assert typed(Composer(), "你好。", "谢谢。", language="zh") == [Type("你好。"), Type("谢谢。")]


def test_new_line_and_new_paragraph_as_utterances_and_inside_them():
    c = Composer()
    assert typed(c, "Dear team,", "New line.", "thanks.", "New paragraph!", "Bye.") == [
        Type("Dear team,"),
        Type("\n"),
        Type("thanks."),
        Type("\n\n"),
        Type("Bye."),
    ]
    assert typed(Composer(), "First point, new line, second point newline third") == [
        Type("First point,\nsecond point\nthird")
    ]


def test_scratch_that_deletes_exactly_the_previous_utterance_and_can_repeat():
    c = Composer()
    assert typed(c, "Keep this.", "Drop this one.") == [Type("Keep this."), Type(" Drop this one.")]
    assert typed(c, "Scratch that.") == [Backspace(len(" Drop this one."))]
    assert typed(c, "Then this.") == [Type(" Then this.")]
    assert typed(c, "scratch that", "Scratch that!") == [
        Backspace(len(" Then this.")),
        Backspace(len("Keep this.")),
    ]
    assert typed(c, "scratch that") == []  # nothing of ours left to delete
    assert typed(c, "Fresh start.") == [Type("Fresh start.")]  # no space: back at our start


def test_scratch_that_inside_an_utterance_takes_back_what_it_said_before():
    c = Composer()
    typed(c, "One.")
    assert typed(c, "two three scratch that four") == [
        Type(" two three"),
        Backspace(len(" two three")),
        Type(" four"),
    ]
    assert typed(c, "New line. Scratch that.") == [Type("\n"), Backspace(1)]


def test_each_command_can_be_switched_off():
    c = Composer(ComposeOptions(commands=frozenset({NEW_LINE})))
    assert typed(c, "Scratch that.", "New line.") == [Type("Scratch that."), Type("\n")]
    c = Composer(ComposeOptions(commands=frozenset({SCRATCH_THAT})))
    assert typed(c, "New line.", "scratch that") == [Type("New line."), Backspace(len("New line."))]
    assert typed(Composer(ComposeOptions(commands=frozenset())), "new paragraph") == [
        Type("new paragraph")
    ]
    assert typed(Composer(), "a newlinely word, scratchthat") == [
        Type("a newlinely word, scratchthat")
    ]


@pytest.mark.parametrize(
    ("env", "platform", "expected"),
    [
        ({}, "darwin", ["quartz", "osascript"]),
        (
            {"XDG_SESSION_TYPE": "wayland", "DISPLAY": ":0"},
            "linux",
            ["wtype", "ydotool", "xdotool"],
        ),
        ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", ["wtype", "ydotool", "xdotool"]),
        ({"XDG_SESSION_TYPE": "x11", "WAYLAND_DISPLAY": "w"}, "linux", ["xdotool"]),
        ({"DISPLAY": ":1"}, "linux", ["xdotool"]),
        ({"XDG_SESSION_TYPE": "tty"}, "linux", ["ydotool"]),
    ],
)
def test_backends_are_tried_in_the_order_the_session_suggests(env, platform, expected):
    assert detect.candidates(env, platform) == expected


def test_no_working_backend_names_what_to_install(isolated_env, tmp_path):
    env = {**isolated_env, "PATH": str(tmp_path), "DISPLAY": ":99", "XDG_SESSION_TYPE": "x11"}
    done = subprocess.run(
        [sys.executable, "-m", "dictated.clients.keyboard.cli"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "`xdotool` is not installed" in done.stderr and "apt install xdotool" in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "dictated.clients.keyboard.cli", "--backend", "wtype"],
        env={**env, "WAYLAND_DISPLAY": "wayland-0"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "`wtype` is not installed" in done.stderr


def test_quartz_and_osascript_refuse_politely_off_macos():
    if sys.platform == "darwin":
        pytest.skip("the macOS backends are exercised on macOS")
    for name in ("quartz", "osascript"):
        with pytest.raises(BackendUnavailable, match="macOS"):
            detect.choose(name)


def test_osascript_gets_the_text_as_arguments_never_as_source():
    argv = osascript.type_argv("osascript", '-e do shell script "id"\nline two')
    assert argv[:3] == ["osascript", "-e", osascript.TYPE_SCRIPT]
    assert argv[3:] == ['+-e do shell script "id"', "+line two"]  # prefixed: never an option
    assert "do shell script" not in osascript.TYPE_SCRIPT


def empty_keycodes() -> list[int]:
    binder = KeymapBinder()
    try:
        return binder._empty_keycodes()
    finally:
        binder.close()


def test_hostile_strings_arrive_literally_through_xdotool(xsession, monkeypatch):
    monkeypatch.setenv("DISPLAY", xsession.display)
    empty_keys = empty_keycodes()
    backend = XdotoolBackend()
    composer = Composer()
    for line in HOSTILE:
        apply(backend, composer.feed(line))
        apply(backend, composer.feed("new line"))
    apply(backend, composer.feed("a raw\nbreak is a space, never Return"))
    assert xsession.read_back(len(HOSTILE) + 1) == "\n".join(
        [*HOSTILE, "a raw break is a space, never Return"]
    )
    assert empty_keycodes() != empty_keys  # it bound keys for the non-ASCII characters
    backend.close()
    assert empty_keycodes() == empty_keys  # and gave them back


def test_more_distinct_characters_than_spare_keys_still_arrive(xsession, monkeypatch):
    """A long Chinese utterance has more distinct characters than the keymap has spare keys."""
    monkeypatch.setenv("DISPLAY", xsession.display)
    text = "".join(chr(0x4E00 + 7 * i) for i in range(120)) + "。Ωß😀"
    backend = XdotoolBackend()
    assert len(set(text)) > backend._keymap.capacity
    apply(backend, Composer().feed(text, "zh"))
    assert xsession.read_back(1) == text
    backend.close()


def test_scratch_that_removes_exactly_the_previous_utterance_on_screen(xsession, monkeypatch):
    monkeypatch.setenv("DISPLAY", xsession.display)
    backend = XdotoolBackend()
    composer = Composer()
    for text in ("Keep 日本 😀.", "Drop ü and 👍 this.", "Scratch that.", "End."):
        apply(backend, composer.feed(text))
    assert xsession.read_back(1) == "Keep 日本 😀. End."


class GrabbedKey:
    """dictated-hotkey's own X11 grab on F9, run in a thread, and xdotool holding the key."""

    def __init__(self, xsession):
        pytest.importorskip("Xlib", reason="python-xlib comes with the [hotkey] extra")
        from dictated.clients.hotkey.keys import parse_combo
        from dictated.clients.hotkey.x11 import X11Listener

        self.xsession = xsession
        self.events: list[str] = []
        self.listener = X11Listener(parse_combo("F9"))
        self.thread = threading.Thread(target=self.listener.run, args=(self,), daemon=True)
        self.thread.start()

    def down(self) -> None:
        self.events.append("down")

    def up(self) -> None:
        self.events.append("up")

    def hold(self) -> None:
        self.xsession.xdotool("keydown", "F9")
        deadline = time.monotonic() + 10
        while self.events != ["down"]:  # the grab is active now
            assert time.monotonic() < deadline, self.events
            time.sleep(0.01)

    def close(self) -> None:
        self.listener.stop()
        self.thread.join(5)
        self.listener.close()


def test_nothing_is_typed_into_a_grabbed_key_it_waits_for_the_release(xsession, monkeypatch):
    """A toggle hotkey acts on the press; while its key is down X sends every typed key to the
    grabbing program. The final is often ready before a tapped key is up, so typing waits; it
    was lost whole before (read back: '' and then only what followed the release)."""
    monkeypatch.setenv("DISPLAY", xsession.display)
    key = GrabbedKey(xsession)
    backend = XdotoolBackend()
    try:
        key.hold()
        release = threading.Timer(0.4, xsession.xdotool, ("keyup", "F9"))
        release.start()
        t0 = time.monotonic()
        apply(backend, Composer().feed("She tapped the key."))
        waited = time.monotonic() - t0
        release.join()
    finally:
        backend.close()
        key.close()
    assert xsession.read_back(1) == "She tapped the key."
    assert key.events == ["down", "up"]
    assert waited >= 0.3, waited  # it waited for the key


def test_a_key_pressed_while_typing_takes_at_most_one_chunk(xsession, monkeypatch):
    """XTest cannot type atomically: a grabbed key pressed while a long final is being typed
    takes what is typed until it is up. Typed in chunks, each after a check, at most the rest
    of one chunk is lost (typed in one go, everything after the press was: ~125 characters)."""
    monkeypatch.setenv("DISPLAY", xsession.display)
    text = " ".join(SENTENCES[:2])  # ~150 characters: ~2 s of xdotool typing
    key = GrabbedKey(xsession)
    backend = XdotoolBackend()
    try:
        press = threading.Timer(0.4, key.hold)
        release = threading.Timer(0.8, xsession.xdotool, ("keyup", "F9"))
        press.start(), release.start()
        apply(backend, Composer().feed(text))
        press.join(), release.join()
    finally:
        backend.close()
        key.close()
    typed = xsession.read_back(1)
    kept = next(
        (i for i, (a, b) in enumerate(zip(typed, text, strict=False)) if a != b), len(typed)
    )
    lost = len(text) - len(typed)
    assert key.events == ["down", "up"]
    assert 0 <= lost <= CHUNK_CHARS, (lost, typed)
    assert typed == text[:kept] + text[kept + lost :], typed  # one gap, the rest arrived


def test_a_key_held_past_the_wait_is_named_then_ignored_until_let_go(xsession, monkeypatch, caplog):
    monkeypatch.setenv("DISPLAY", xsession.display)
    held = HeldKeys()
    try:
        xsession.xdotool("keydown", "F9")
        assert held.down(), "XQueryKeymap sees the key"
        assert held.wait_released(timeout_s=0.2) is False  # named, and counted stuck
        t0 = time.monotonic()
        assert held.wait_released(timeout_s=5) is True  # a stuck key costs one wait, not each
        assert time.monotonic() - t0 < 1
        xsession.xdotool("keyup", "F9")
        assert held.down() == [] and held.wait_released(timeout_s=0.2) is True
        xsession.xdotool("keydown", "F9")  # let go once: it is waited for again
        assert held.wait_released(timeout_s=0.2) is False
        xsession.xdotool("keyup", "F9")
    finally:
        held.close()
    assert caplog.text.count("still held after") == 2


def test_chunks_cut_after_words_and_lose_nothing():
    for text in (
        " ".join(SENTENCES[:3]),
        "日本語のテキストはスペースなしで長く続くことがありますよね",
        "  lead  and  trail  ",
        "supercalifragilisticexpialidocious",
        "",
    ):
        pieces = chunks(text)
        assert "".join(pieces) == text
        assert all(0 < len(p) <= CHUNK_CHARS for p in pieces)
    assert chunks("She planted tomatoes and sunflowers.") == [
        "She planted ",
        "tomatoes and ",
        "sunflowers.",
    ]


@pytest.mark.slow  # the real daemon with a real model
def test_dictated_type_types_a_real_daemons_transcripts_across_a_restart(isolated_env, xsession):
    """Speech in, keystrokes out: two utterances, a daemon restart, "scratch that", one more."""
    env = {**isolated_env, "DISPLAY": xsession.display, "XDG_SESSION_TYPE": "x11"}
    args = ("--source", "-", "--engine", "whisper", "--linger", "0")
    typer = subprocess.Popen(
        [sys.executable, "-m", "dictated.clients.keyboard.cli", "--count", "4"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    daemon = start_daemon(env, *args, stdin=subprocess.PIPE)
    try:
        daemon.wait_ready()
        feed(daemon, SENTENCES[0])
        feed(daemon, SENTENCES[1])
        wait_for_transcripts(daemon, 2)
        daemon.stop()
        daemon = start_daemon(env, *args, stdin=subprocess.PIPE)
        daemon.wait_ready()
        daemon.feed(command_speech("Scratch that."))
        feed(daemon, SENTENCES[2])
        transcripts = wait_for_transcripts(daemon, 4)
        _, err = typer.communicate(timeout=60)
    finally:
        daemon.stop()
        if typer.poll() is None:
            typer.kill()
            typer.communicate()
    assert typer.returncode == 0, err
    texts = [t["text"] for t in transcripts]
    assert texts[2].lower().strip(".!") == "scratch that", texts
    assert xsession.read_back(1) == f"{texts[0]} {texts[3]}", err
    assert "typing with xdotool" in err


def test_a_bad_endpoint_is_a_usage_error(isolated_env):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dictated.clients.keyboard.cli",
            "--dry-run",
            "--endpoint",
            "nonsense",
        ],
        env=isolated_env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "cannot connect to nonsense" in done.stderr


@pytest.mark.slow  # the real daemon with a real model
def test_dry_run_prints_each_action_quoted_from_a_tcp_endpoint(isolated_env, tmp_path, free_port):
    """--endpoint tcp://… and --control override the defaults (the client's own default socket
    directory is empty); --dry-run needs no typing tool."""
    endpoint = f"tcp://127.0.0.1:{free_port}"
    daemon = start_daemon(
        isolated_env,
        *("--source", "-", "--engine", "whisper", "--linger", "0", "--pub", endpoint),
        stdin=subprocess.PIPE,
    )
    env = {**isolated_env, "PATH": str(tmp_path), "DICTATED_RUNTIME_DIR": str(tmp_path)}
    typer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dictated.clients.keyboard.cli",
            *("--dry-run", "--count", "2", "--endpoint", endpoint),
            *("--control", daemon.control_endpoint),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        daemon.wait_ready()
        time.sleep(1.0)  # the client connects over tcp
        feed(daemon, SENTENCES[4])
        daemon.feed(command_speech("Scratch that."))
        transcripts = wait_for_transcripts(daemon, 2)
        out, err = typer.communicate(timeout=60)
    finally:
        daemon.stop()
        if typer.poll() is None:
            typer.kill()
            typer.communicate()
    assert typer.returncode == 0, err
    first = transcripts[0]["text"]
    assert out.splitlines() == [f'type "{first}"', f"backspace {len(first)}"]
    assert f"connected to the daemon ({endpoint})" in err
