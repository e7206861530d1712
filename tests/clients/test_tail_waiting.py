"""dictated-tail with no daemon says, on stderr, what it waits for: once per outage, and stdout
stays clean (the editor plugins parse it).

A stand-in daemon (a real PUB socket bound at the per-user ipc path) comes, publishes, goes away
and comes back; the real dictated-tail process follows it.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import zmq

from dictated.protocol import encode_event, make_event

WAITING = "waiting for the dictated daemon at"
WENT_AWAY = "the daemon went away"


class Lines:
    """Lines of a pipe, collected on a thread so the test can look at them as they come."""

    def __init__(self, pipe):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe) -> None:
        for line in pipe:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, times: int = 1, timeout_s: float = 10) -> None:
        deadline = time.monotonic() + timeout_s
        while self.count(text) < times:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} in {self.lines}")
            time.sleep(0.05)

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)


def publish_until_seen(pub: zmq.Socket, out: Lines, seq: int, text: str) -> None:
    """Publish a transcript until the tail printed it (PUB drops what precedes the subscription).

    Always the same event, `seq` included: a copy that arrives after the first is a duplicate the
    tail drops, however slowly the first one reaches `out` on a loaded machine.
    """
    deadline = time.monotonic() + 10
    message = encode_event(make_event("transcript", seq, {"text": text}))
    while text not in out.lines:
        assert time.monotonic() < deadline, out.lines
        pub.send_multipart(message)
        time.sleep(0.1)


def bind(endpoint: str) -> zmq.Socket:
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(endpoint)
    return pub


def start_tail(env: dict[str, str], *args: str) -> tuple[subprocess.Popen, Lines, Lines]:
    tail = subprocess.Popen(
        [sys.executable, "-m", "dictated.clients.tail", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return tail, Lines(tail.stdout), Lines(tail.stderr)


def test_tail_says_once_per_outage_that_it_waits(isolated_env):
    runtime = Path(isolated_env["DICTATED_RUNTIME_DIR"])
    endpoint = f"ipc://{runtime}/events"
    tail, out, err = start_tail(isolated_env)
    try:
        started = time.monotonic()
        err.wait_for(WAITING)
        print(f"said it waits after {time.monotonic() - started:.2f} s: {err.lines}")
        time.sleep(2.0)  # still waiting: said once, not repeated
        assert err.lines == [f"dictated-tail: {WAITING} {endpoint} (start it with `dictated run`)"]
        assert out.lines == []

        pub = bind(endpoint)  # the daemon starts: the text goes to stdout, nothing else does
        publish_until_seen(pub, out, 100, "first words")
        pub.close(0)  # it goes away: said once
        err.wait_for(WENT_AWAY)
        pub = bind(endpoint)  # and comes back
        publish_until_seen(pub, out, 1000, "second words")
        pub.close(0)
        err.wait_for(WENT_AWAY, times=2)
    finally:
        tail.terminate()
        tail.wait(10)
    assert out.lines == ["first words", "second words"]  # stdout: only transcripts
    assert err.count(WAITING) == 1 and err.count(WENT_AWAY) == 2, err.lines
    assert len(err.lines) == 3, err.lines


def test_tail_as_the_editor_plugins_run_it_says_it_waits(isolated_env):
    """`dictated-tail --json --topic transcript --wait`: the notice on stderr, stdout empty."""
    runtime = Path(isolated_env["DICTATED_RUNTIME_DIR"])
    tail, out, err = start_tail(isolated_env, "--json", "--topic", "transcript", "--wait")
    try:
        err.wait_for("waiting for")
        time.sleep(2.0)
    finally:
        tail.terminate()
        tail.wait(10)
    print(err.lines)
    assert len(err.lines) == 1 and "waiting for" in err.lines[0], err.lines
    assert str(runtime) in err.lines[0] and err.lines[0].startswith("dictated-tail: ")
    assert out.lines == []
