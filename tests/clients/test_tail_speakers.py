"""dictated-tail shows who spoke: `[me] text` for a transcript with a speaker, the text alone
without one (as before speakers), renamed or hidden on request; --json stays the raw event.

A stand-in daemon (a real PUB socket on tcp) publishes contract-shaped events to the real
dictated-tail process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import zmq

from dictated.protocol import encode_event, make_event
from tests.clients.test_tail_waiting import Lines

EVENTS = [
    (
        "partial",
        {"id": "1f-system-2", "text": "hello from", "channel": "system", "speaker": "them"},
    ),
    (
        "transcript",
        {"id": "1f-system-2", "text": "hello from them", "channel": "system", "speaker": "them"},
    ),
    ("transcript", {"id": "1f-mic-3", "text": "plain words", "channel": "mic"}),
    (
        "transcript",
        {"id": "1f-mic-4", "text": "bye\x1b[2J", "channel": "mic", "speaker": "me\x1b]0;x\x07"},
    ),
]


def run_tail(env: dict[str, str], port: int, *args: str) -> list[str]:
    """What the tail printed for EVENTS, after a first `ready` it was sent until it showed."""
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(f"tcp://127.0.0.1:{port}")
    tail = subprocess.Popen(
        [sys.executable, "-m", "dictated.clients.tail", "--endpoint", f"tcp://127.0.0.1:{port}"]
        + ["--partials", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out = Lines(tail.stdout)
    try:
        seq, deadline = 1, time.monotonic() + 20
        while not any("ready" in line for line in out.lines):  # PUB drops what precedes the join
            assert time.monotonic() < deadline and tail.poll() is None, tail.stderr.read()
            body = {"id": f"1f-mic-{seq}", "text": "ready", "channel": "mic", "speaker": "me"}
            pub.send_multipart(encode_event(make_event("transcript", seq, body)))
            seq += 1
            time.sleep(0.1)
        for topic, body in EVENTS:
            pub.send_multipart(encode_event(make_event(topic, seq, body)))
            seq += 1
        out.wait_for("bye")
    finally:
        tail.terminate()
        tail.wait(10)
        pub.close(0)
    return [line for line in out.lines if "ready" not in line]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            (),
            [
                "partial: [them] hello from",
                "[them] hello from them",
                "plain words",
                "[me]0;x] bye\\x1b[2J",
            ],
        ),
        (
            ("--speaker-name", "them=Alice", "--speaker-name", "mic=Bob"),
            [
                "partial: [Alice] hello from",
                "[Alice] hello from them",
                "[Bob] plain words",
                "[Bob] bye\\x1b[2J",
            ],
        ),
        (
            ("--no-speakers",),
            ["partial: hello from", "hello from them", "plain words", "bye\\x1b[2J"],
        ),
    ],
)
def test_tail_shows_the_speaker_label(isolated_env, free_port, args, expected):
    assert run_tail(isolated_env, free_port, *args) == expected


def test_tail_json_is_the_event_as_sent(isolated_env, free_port):
    lines = run_tail(isolated_env, free_port, "--json", "--speaker-name", "them=Alice")
    events = [json.loads(line) for line in lines]
    assert [e.get("speaker") for e in events] == ["them", "them", None, "me\x1b]0;x\x07"]
    assert [e["channel"] for e in events] == ["system", "system", "mic", "mic"]


def test_a_bad_speaker_name_is_a_usage_error(isolated_env):
    done = subprocess.run(
        [sys.executable, "-m", "dictated.clients.tail", "--speaker-name", "Alice"],
        env=isolated_env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "LABEL=NAME (e.g. them=Alice)" in done.stderr, done.stderr
