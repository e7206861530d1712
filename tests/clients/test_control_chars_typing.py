"""A hostile transcription server's control characters reach neither the window nor the log.

The real daemon (`--engine remote`) sends real speech to a real HTTP server on loopback that
answers every request with a transcript holding ESC sequences, a TAB, a raw newline and U+202E;
the real `dictated-type` types it with xdotool into an xterm on Xvfb whose terminal writes each
finished line (each Return) to a file. The window must receive the clean text with no Return,
and the daemon's stderr log must show the controls escaped.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from dictated.protocol import escape_controls
from tests.clients.test_control_chars import UNSAFE
from tests.daemon_proc import feed, start_daemon, wait_for_transcripts
from tests.engines.remote.hostile_server import Answer, HostileServer
from tests.speech import SENTENCES
from tests.xsession import open_session

#: what the server says; the shell line must not run (no Return), the screen must not be cleared
ANSWER = "echo typed\x1b[2J\x1b]0;owned\x07\tnext\nrm -rf ~/x\r \u202etxt.exe \x9b1m done"
TYPED = "echo typed[2J]0;owned next rm -rf ~/x txt.exe 1m done"


@pytest.fixture
def hostile_server() -> Iterator[HostileServer]:
    with HostileServer(Answer.json(ANSWER)) as server:
        yield server


@pytest.fixture
def xsession(tmp_path):
    yield from open_session(tmp_path)


def test_dictated_type_types_a_hostile_transcript_clean_and_never_presses_return(
    isolated_env, xsession, hostile_server
):
    env = {**isolated_env, "DISPLAY": xsession.display, "XDG_SESSION_TYPE": "x11"}
    typer = subprocess.Popen(
        [sys.executable, "-m", "dictated.clients.keyboard.cli", "--count", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    daemon = start_daemon(
        isolated_env,
        *("--engine", "remote", "--remote-url", hostile_server.url, "--source", "-"),
        *("--linger", "0", "--log-level", "debug"),
        stdin=subprocess.PIPE,
    )
    try:
        daemon.wait_ready()
        # dictated-type follows live events only: feed once it is surely subscribed (its
        # reconnect backoff may have grown while the daemon started), or the one transcript
        # can be published before its subscription arrives
        events = daemon.events_endpoint.removeprefix("ipc://")
        deadline = time.monotonic() + 30
        while not _connected(events):
            assert time.monotonic() < deadline, "dictated-type did not connect"
            time.sleep(0.05)
        time.sleep(0.5)  # the ZMTP handshake and the subscription after the socket connect
        feed(daemon, SENTENCES[0])
        transcript = wait_for_transcripts(daemon, 1)[0]
        _, typer_err = typer.communicate(timeout=60)
        log = daemon.finish()  # end of input: it exits
    finally:
        if daemon.proc.poll() is None:
            daemon.stop()
        if typer.poll() is None:
            typer.kill()
            typer.communicate()
    assert transcript["text"] == ANSWER.strip()  # the daemon passed it on as said (JSON escapes it)
    assert typer.returncode == 0, typer_err
    # the first Return is read_back's own: had a newline or \r been typed, a line would end sooner
    assert xsession.read_back(1) == TYPED
    assert xsession.out.read_text(encoding="utf-8") == TYPED + "\n"
    assert escape_controls(ANSWER.strip()) in log, log  # the transcript's log line, escaped
    assert not UNSAFE - {"\n"} & set(log), log


def _connected(path: str) -> bool:
    """Whether a client holds a connection to the Unix socket at `path` (`ss`, iproute2)."""
    out = subprocess.run(["ss", "-xn"], capture_output=True, text=True).stdout
    return any(path in line and "ESTAB" in line for line in out.splitlines())
