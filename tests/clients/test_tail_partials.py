"""dictated-tail --partials: updated in place on a terminal, one line per partial elsewhere.

The real tail process, subscribed to an in-process daemon (real sockets and segmenter, the
FakeEngine) that publishes partials; its output goes to a pipe or to a pseudo-terminal.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
import time

import pytest

from dictated.speculation import SpeculationOptions
from tests.fake_engine import FakeEngine
from tests.speech import SENTENCES, compose
from tests.test_server import GatedSource, InProcess

CLEAR = "\r\x1b[K"


def read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # the pty's other end closed
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode()


@pytest.mark.parametrize("terminal", [False, True])
def test_tail_shows_partials_then_the_final(isolated_env, free_port, tmp_path, terminal):
    signal = compose(SENTENCES[:2], [0.45])  # one utterance with a pause inside
    options = SpeculationOptions(mode="on", partials="on", partial_interval_ms=500)
    run = InProcess(
        isolated_env,
        free_port,
        GatedSource(signal.pcm, pace_s=0.02),
        FakeEngine(delay_s=0.01),
        tmp_path,
        options,
    )
    if terminal:
        leader, follower = pty.openpty()
        stdout = follower
    else:
        stdout = subprocess.PIPE
    tail = subprocess.Popen(
        [
            *(sys.executable, "-m", "dictated.clients.tail", "--partials", "--count", "1"),
            *("--connect", f"tcp://127.0.0.1:{free_port}", "--wait"),  # --wait: says "connected"
        ],
        env=isolated_env,
        stdout=stdout,
        stderr=subprocess.PIPE,
    )
    try:
        run.start(go=False)
        said: list[str] = []  # partials are live only: the audio flows once the tail is connected

        def read() -> None:
            for line in tail.stderr:
                said.append(line.decode())

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        deadline = time.monotonic() + 30
        while not any("connected to the daemon" in line for line in said):
            assert tail.poll() is None and time.monotonic() < deadline, f"not connected: {said}"
            time.sleep(0.01)
        run.source.go.set()
        assert run.finish() == 0
        tail.wait(30)
        reader.join(5)
    finally:
        if tail.poll() is None:  # a failed wait above leaves it running
            tail.kill()
            tail.wait(10)
    if terminal:
        os.close(follower)
        out = read_all(leader)
        os.close(leader)
    else:
        out = tail.stdout.read().decode()
    (final,) = run.of("transcript")
    partials = [p["text"] for p in run.of("partial")]
    assert len(partials) >= 2
    if terminal:  # each partial rewrites the line; the final clears it and ends it
        out = out.replace("\r\n", "\n")  # the terminal's own newline translation
        assert out == "".join(CLEAR + p for p in partials) + CLEAR + final["text"] + "\n"
    else:
        assert out.splitlines() == [f"partial: {p}" for p in partials] + [final["text"]]
