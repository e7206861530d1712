"""The Emacs package in a real Emacs: it byte-compiles cleanly, joins like dictated-type, and a real
daemon's transcripts land at point across a daemon restart."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from tests.clients.hotkey_fakes import fake_daemon, publish_until
from tests.clients.test_nvim import CASES, python_actions
from tests.clients.test_type_armed import final
from tests.daemon_proc import feed, start_daemon, wait_for_transcripts
from tests.dictation import command_speech, composed_text
from tests.emacs_session import PACKAGE_DIR, Emacs, elisp_string, require_emacs
from tests.speech import SENTENCES

BUFFER = '(get-buffer-create "notes")'


@pytest.fixture
def emacs(isolated_env):
    editor = Emacs(isolated_env)
    yield editor
    editor.close()


def test_byte_compiles_without_a_single_warning(tmp_path):
    exe = require_emacs()
    shutil.copy(PACKAGE_DIR / "dictated.el", tmp_path)
    done = subprocess.run(
        [
            exe,
            "--batch",
            "-Q",
            "--eval",
            "(setq byte-compile-error-on-warn t)",
            "-f",
            "batch-byte-compile",
            str(tmp_path / "dictated.el"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and (tmp_path / "dictated.elc").exists(), done.stderr
    assert "Warning" not in done.stderr, done.stderr


def test_package_headers_are_what_package_el_reads(emacs):
    info = emacs.eval(
        "(progn (require 'package) (with-temp-buffer (insert-file-contents "
        f"{elisp_string(str(PACKAGE_DIR / 'dictated.el'))}) "
        "(let ((d (package-buffer-info))) "
        "(list (package-desc-name d) (package-version-join (package-desc-version d)) "
        "(package-desc-summary d)))))"
    )
    assert info[0] == "dictated" and info[1] == "0.1.0" and "transcripts" in info[2]
    first_line = (PACKAGE_DIR / "dictated.el").read_text().splitlines()[0]
    assert "lexical-binding: t" in first_line


def test_elisp_composer_makes_the_same_edits_as_dictated_type(emacs):
    for case in CASES:
        got = emacs.eval(
            "(let ((dictated--typed nil)) (vconcat (mapcar (lambda (u) (vconcat (mapcar "
            "(lambda (a) (if (stringp a) (list (cons 'type a)) (list (cons 'backspace (cdr a))))) "
            "(dictated-compose (aref u 0) (aref u 1))))) "
            f"(json-read-from-string {elisp_string(json.dumps(case))}))))"
        )
        assert got == python_actions(case), case


def test_a_missing_command_and_a_stopped_daemon_are_said_plainly(isolated_env, tmp_path):
    editor = Emacs(isolated_env, path=str(tmp_path))  # nothing on PATH
    try:
        editor.eval(f"(with-current-buffer {BUFFER} (dictated-start) nil)")
        assert re.search(
            "dictated-tail.? is not on PATH", editor.messages()
        )  # quotes: curly or not
        assert editor.eval(f"(with-current-buffer {BUFFER} dictated-mode)") is False
        editor.call("dictated-status")
        assert re.search("dictated.? is not on PATH", editor.messages().splitlines()[-1])
    finally:
        editor.close()
    editor = Emacs(isolated_env)
    try:
        editor.call("dictated-status")
        editor.wait_for(
            lambda: "no dictated daemon is running" in editor.messages(), "daemon-down message"
        )
    finally:
        editor.close()


@pytest.mark.slow  # the real daemon with a real model
def test_transcripts_land_at_point_across_a_daemon_restart(isolated_env, emacs):
    def text() -> str:
        return emacs.eval(f"(with-current-buffer {BUFFER} (buffer-string))")

    emacs.eval(
        f'(with-current-buffer {BUFFER} (insert "first line\\n\\nlast line") '
        "(goto-char (point-min)) (forward-line 1) (dictated-start) nil)"
    )  # before the daemon runs: it waits for it
    assert emacs.eval(f"(with-current-buffer {BUFFER} dictated-mode)") is True
    emacs.wait_for(lambda: "waiting for it" in emacs.messages(), "a waiting notice")
    args = ("--source", "-", "--engine", "whisper", "--linger", "0")
    daemon = start_daemon(isolated_env, *args, stdin=subprocess.PIPE)
    try:
        daemon.wait_ready()
        emacs.wait_for(lambda: "connected" in emacs.messages(), "a connected notice")
        emacs.call("dictated-status")
        emacs.wait_for(
            lambda: re.search(r"dictated [0-9.]+: ready", emacs.messages()), "the daemon's status"
        )
        feed(daemon, SENTENCES[0])
        emacs.wait_for(lambda: text() != "first line\n\nlast line", "the first transcript")
        # an edit elsewhere in the buffer: the insertion point moves with its text
        emacs.eval(
            f'(with-current-buffer {BUFFER} (save-excursion (goto-char 1) (insert "added above\\n")) nil)'
        )
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
        expected = f"added above\nfirst line\n{composed_text(transcripts)}\nlast line"
        assert composed_text(transcripts) == f"{texts[0]}\n{texts[4]}"
        emacs.wait_for(lambda: text() == expected, f"the buffer to hold {expected!r}")
        assert "went away" in emacs.messages()  # it did see the restart
        emacs.call("dictated-stop")
        assert emacs.eval(f"(with-current-buffer {BUFFER} dictated-mode)") is False
        assert (
            emacs.eval(
                '(seq-filter (lambda (p) (string-prefix-p "dictated" (process-name p))) (process-list))'
            )
            is False
        )
    finally:
        daemon.stop()


def test_lighter_shows_the_daemons_state_and_only_wanted_finals_are_inserted(isolated_env, emacs):
    """Against a fake daemon (real ZeroMQ sockets): the lighter says PTT and disarmed; a disarmed
    final and a voice command are not inserted, armed ones (and an older daemon's) are."""

    def lighter() -> str:
        return emacs.eval(f"(format-mode-line minor-mode-alist nil nil {BUFFER})")

    def text() -> str:
        return emacs.eval(f"(with-current-buffer {BUFFER} (buffer-string))")

    with fake_daemon(isolated_env["DICTATED_RUNTIME_DIR"]) as (_, events):
        emacs.eval(f"(with-current-buffer {BUFFER} (dictated-start) nil)")
        assert "Dict" in lighter() and "[" not in lighter()
        state = {"mode": "push-to-talk", "held": False, "armed": False, "listening": True}
        publish_until(events, lambda: "Dict[PTT,disarmed]" in lighter(), "disarmed", **state)
        events.publish("transcript", **final("one", armed=False, by_key=True))
        events.publish("status", state="ready", **{**state, "armed": True, "held": True})
        emacs.wait_for(lambda: "Dict[PTT,held]" in lighter(), "armed and held")
        events.publish("transcript", **final("two", armed=True, by_key=True))
        events.publish(
            "transcript", **final("Stop dictation.", armed=False, command="stop_dictation")
        )
        events.publish("transcript", **final("three"))
        events.publish("status", state="paused", **{**state, "armed": True, "listening": False})
        emacs.wait_for(lambda: "Dict[off,PTT]" in lighter(), "listening off")
        emacs.wait_for(lambda: text() == "two three", "two armed finals")
        assert "typing armed" in emacs.messages()
        emacs.call("dictated-stop")
