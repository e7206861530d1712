"""The real daemon process (`dictated run --engine remote`) against a hostile or absent server.

A hostile server's 64 MB answer must leave the daemon small (VmHWM, the peak resident size, from
/proc) with no journal line over 1 MB; a server that comes up only after the daemon must be waited
for (status `warming`, saying why) rather than failing the start, and a stop signal during that
wait ends the daemon cleanly. The server is tests/engines/remote/hostile_server.py, in this process.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from dictated.clients.control import ControlClient, DaemonUnavailable
from tests.daemon_proc import DaemonProcess, daemon_command, utterance_bytes
from tests.engines.remote.hostile_server import Answer, HostileServer
from tests.speech import SENTENCES

MB = 1024 * 1024
#: the issue asks for under 400 MB; the daemon on this engine peaks at ~50 MB, and the old code,
#: which took the answer whole, at ~370 MB for 64 MB (1.5 GB for 300 MB): 150 MB tells them apart
PEAK_LIMIT = 150 * MB


def start(env: dict, tmp_path: Path, url: str) -> tuple[DaemonProcess, Path]:
    """A stdin daemon on the remote engine; its log goes to a file (a pipe nobody reads would
    block a daemon that logs a lot, and the old code logged whole answers)."""
    log = tmp_path / "daemon.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            daemon_command(
                "--source", "-", "--engine", "remote", "--remote-url", url, "--linger", "0",
            ),
            env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
    return DaemonProcess(proc, env), log


def stop(daemon: DaemonProcess) -> None:
    if daemon.proc.poll() is None:
        daemon.proc.kill()
    daemon.proc.wait(30)


def next_event(daemon: DaemonProcess, seen: int, timeout_s: float = 60) -> tuple[str, dict]:
    """The journal's event number `seen` (0-based) of the transcript and error topics."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        events = [
            (e["topic"], e["event"])
            for e in daemon.control.request("history", since=0)["events"]
            if e["topic"] in ("transcript", "error")
        ]
        if len(events) > seen:
            return events[seen]
        assert daemon.proc.poll() is None, "the daemon exited"
        time.sleep(0.1)
    raise TimeoutError("no event")


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def status_or_none(daemon: DaemonProcess) -> dict | None:
    try:
        return ControlClient(daemon.control_endpoint, timeout_s=0.5).request("status")
    except DaemonUnavailable:
        return None


def wait_warming(daemon: DaemonProcess, timeout_s: float = 60) -> dict:
    """The status once the daemon says it is waiting for the server."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert daemon.proc.poll() is None, f"the daemon exited with {daemon.proc.returncode}"
        status = status_or_none(daemon)
        if status and "waiting for the transcription server" in (status.get("detail") or ""):
            return status
        time.sleep(0.1)
    raise TimeoutError("the daemon never said it was waiting for the server")


def test_a_64_mb_answer_leaves_the_daemon_small_and_the_journal_clean(
    isolated_env, tmp_path, capsys
):
    answers = (Answer.json("warm"), Answer.huge(64 * MB), Answer.json("Back to normal."))
    with HostileServer(*answers) as server:
        daemon, log = start(isolated_env, tmp_path, server.url)
        try:
            status = daemon.wait_ready(90)
            daemon.feed(utterance_bytes(SENTENCES[0]))
            topic, body = next_event(daemon, 0)
            peak = peak_rss(daemon.proc.pid)
            with capsys.disabled():
                print(f"\ndaemon VmHWM after a 64 MB answer: {peak / MB:.0f} MB")
            assert topic == "error" and "over 2 MiB" in body["message"], body
            assert Path(body["audio_path"]).is_file()  # the utterance is kept, not lost
            assert peak < PEAK_LIMIT, f"peak {peak / MB:.0f} MB"
            time.sleep(0.6)  # the server sits out its backoff (0.5 s) after the failure
            daemon.feed(utterance_bytes(SENTENCES[1]))
            topic, body = next_event(daemon, 1)
            assert (topic, body.get("text")) == ("transcript", "Back to normal."), body
            daemon.proc.stdin.close()
            assert daemon.proc.wait(60) == 0, log.read_text()
        finally:
            stop(daemon)
    lines = Path(status["journal"]).read_bytes().splitlines()
    assert lines and max(len(line) for line in lines) < MB
    assert server.sent < 32 * MB  # the daemon hung up, it did not take the answer whole


def test_the_daemon_waits_for_a_server_that_comes_up_later_then_transcribes(
    isolated_env, tmp_path, free_port
):
    url = f"http://127.0.0.1:{free_port}/v1"
    daemon, log = start(isolated_env, tmp_path, url)
    try:
        status = wait_warming(daemon)  # not exit 1 within a second, as it did
        assert status["state"] == "warming"
        assert "connection refused" in status["detail"] and url in status["detail"]
        time.sleep(2)  # the network comes up later still
        assert daemon.proc.poll() is None
        with HostileServer(Answer.json("The server came up late."), port=free_port):
            assert daemon.wait_ready(60)["state"] == "ready"
            assert daemon.control.request("status").get("detail") is None
            daemon.feed(utterance_bytes(SENTENCES[0]))
            topic, body = next_event(daemon, 0)
            assert (topic, body.get("text")) == ("transcript", "The server came up late."), body
            daemon.proc.stdin.close()
            assert daemon.proc.wait(60) == 0
    finally:
        stop(daemon)
    text = log.read_text()
    assert "waiting for the transcription server" in text and "Traceback" not in text


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_while_waiting_for_the_server_exits_cleanly(
    isolated_env, tmp_path, free_port, sig
):
    daemon, log = start(isolated_env, tmp_path, f"http://127.0.0.1:{free_port}/v1")
    try:
        wait_warming(daemon)
        sent = time.monotonic()
        daemon.proc.send_signal(sig)
        assert daemon.proc.wait(15) == 0
        assert time.monotonic() - sent < 5  # the backoff wait is interrupted, not sat out
    finally:
        stop(daemon)
    assert "Traceback" not in log.read_text()
