"""The Neovim plugin in a real Neovim: same joining as dictated-type, and a real daemon's transcripts
inserted at the cursor across a daemon restart."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from dictated.clients.keyboard.compose import Backspace, Composer
from tests.clients.hotkey_fakes import fake_daemon, publish_until
from tests.clients.test_type import HOSTILE
from tests.clients.test_type_armed import final
from tests.daemon_proc import feed, start_daemon, wait_for_transcripts
from tests.dictation import command_speech, composed_text
from tests.nvim_session import Nvim
from tests.speech import SENTENCES

# utterance sequences (text, language) both implementations must turn into the same edits
CASES = [
    [("Hello world.", "en"), (", and more", "en"), ("New line.", "en"), ("Next one!", "en")],
    [
        ("Keep this.", "en"),
        ("Drop this one.", "en"),
        ("Scratch that.", "en"),
        ("scratch that", "en"),
    ],
    [("A new line, here", "en"), ("ok scratch that fine", "en"), ("new paragraph", "en")],
    [("First point, new line, second point newline third", "en"), ("(aside)", "en")],
    [("こんにちは。", "ja"), ("元気です。", "ja"), ("你好。", "zh")],
    [
        ("Keep 日本 😀.", "en"),
        ("Drop ü and 👍 this.", "en"),
        ("Scratch that.", "en"),
        ("End.", "en"),
    ],
    [("a newlinely word, scratchthat", "en"), ("New Line", "en"), ("NEW PARAGRAPH.", "en")],
    [(text, "en") for text in HOSTILE],
]


@pytest.fixture
def nvim(isolated_env):
    editor = Nvim(isolated_env)
    yield editor
    editor.close()


def python_actions(case):
    composer = Composer()
    return [
        [
            {"backspace": a.count} if isinstance(a, Backspace) else {"type": a.text}
            for a in composer.feed(t, lang)
        ]
        for t, lang in case
    ]


def test_lua_composer_makes_the_same_edits_as_dictated_type(nvim):
    for case in CASES:
        code = (
            "(function() local c = require('dictated.compose').new() local out = {} "
            f"for _, u in ipairs(vim.fn.json_decode({json.dumps(json.dumps(case))})) do "
            "table.insert(out, c:feed(u[1], u[2])) end return out end)()"
        )
        got = nvim.lua(code)
        assert [a or [] for a in got] == python_actions(case), case


def test_a_missing_command_and_a_stopped_daemon_are_said_plainly(isolated_env, tmp_path):
    editor = Nvim(isolated_env, path=str(tmp_path))  # nothing on PATH: no dictated-tail
    try:
        editor.command("DictatedStart")
        assert "`dictated-tail` is not on PATH" in editor.messages()
        assert editor.lua("require('dictated').running()") is False
        editor.command("DictatedStatus")
        editor.wait_for(lambda: "`dictated` is not on PATH" in editor.messages(), "status message")
    finally:
        editor.close()
    editor = Nvim(isolated_env)
    try:
        editor.command("DictatedStatus")
        editor.wait_for(
            lambda: "no dictated daemon is running" in editor.messages(), "daemon-down message"
        )
    finally:
        editor.close()


@pytest.mark.slow  # the real daemon with a real model
def test_transcripts_land_at_the_cursor_across_a_daemon_restart(isolated_env, nvim):
    nvim.lua("vim.api.nvim_buf_set_lines(0, 0, -1, false, {'first line', '', 'last line'})")
    nvim.lua("vim.api.nvim_win_set_cursor(0, {2, 0})")
    nvim.command("DictatedStart")  # before the daemon runs: it waits for it
    nvim.wait_for(lambda: "waiting for it" in nvim.messages(), "a waiting notice")
    args = ("--source", "-", "--engine", "whisper", "--linger", "0")
    daemon = start_daemon(isolated_env, *args, stdin=subprocess.PIPE)
    try:
        daemon.wait_ready()
        nvim.wait_for(lambda: "connected" in nvim.messages(), "a connected notice")
        nvim.command("DictatedStatus")
        nvim.wait_for(
            lambda: re.search(r"dictated [0-9.]+: ready", nvim.messages()), "the daemon's status"
        )
        feed(daemon, SENTENCES[0])
        nvim.wait_for(lambda: nvim.lines()[1] != "", "the first transcript")
        # an edit elsewhere in the buffer: the insertion point moves with its text
        nvim.lua("vim.api.nvim_buf_set_lines(0, 0, 0, false, {'added above'})")
        daemon.feed(command_speech("New line."))
        feed(daemon, SENTENCES[1])
        wait_for_transcripts(daemon, 3)
        daemon.stop()
        daemon = start_daemon(isolated_env, *args, stdin=subprocess.PIPE)
        daemon.wait_ready()
        daemon.feed(command_speech("Scratch that."))
        feed(daemon, SENTENCES[2])
        transcripts = wait_for_transcripts(daemon, 5)
        texts = [t["text"] for t in transcripts]
        assert [texts[1].lower().strip("."), texts[3].lower().strip(".")] == [
            "new line",
            "scratch that",
        ]
        expected = [
            "added above",
            "first line",
            *composed_text(transcripts).split("\n"),
            "last line",
        ]
        assert expected[2:4] == [texts[0], texts[4]]  # scratch that took back the second sentence
        nvim.wait_for(lambda: nvim.lines() == expected, f"the buffer to hold {expected}")
        assert "went away" in nvim.messages()  # it did see the restart
        assert nvim.lua("require('dictated').running()") is True
        nvim.command("DictatedStop")
        assert nvim.lua("require('dictated').running()") is False
    finally:
        daemon.stop()


def test_statusline_shows_the_daemons_state_and_only_wanted_finals_are_inserted(isolated_env, nvim):
    """Against a fake daemon (real ZeroMQ sockets): push-to-talk and disarmed in the statusline;
    a disarmed final and a voice command are not inserted, armed ones (and an older daemon's,
    which has no `armed`) are."""

    def statusline() -> str:
        return nvim.lua("require('dictated').statusline()")

    with fake_daemon(isolated_env["DICTATED_RUNTIME_DIR"]) as (_, events):
        assert statusline() == ""
        nvim.command("DictatedStart")
        state = {"mode": "push-to-talk", "held": False, "armed": False, "listening": True}
        publish_until(events, lambda: statusline() == "dictated PTT disarmed", "disarmed", **state)
        events.publish("transcript", **final("one", armed=False, by_key=True))
        events.publish("status", state="ready", **{**state, "armed": True, "held": True})
        nvim.wait_for(lambda: statusline() == "dictated PTT held", "armed and held")
        events.publish("transcript", **final("two", armed=True, by_key=True))
        events.publish(
            "transcript", **final("Stop dictation.", armed=False, command="stop_dictation")
        )
        events.publish("transcript", **final("three"))
        events.publish("status", state="paused", **{**state, "armed": True, "listening": False})
        nvim.wait_for(lambda: statusline() == "dictated off", "listening off")
        nvim.wait_for(lambda: nvim.lines() == ["two three"], "two armed finals")
        assert "typing armed" in nvim.messages()
