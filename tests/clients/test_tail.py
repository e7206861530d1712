"""dictated-tail: live transcripts, and --since replay with no gap and no duplicate across reconnects."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.daemon_proc import feed, start_daemon, start_stdin_daemon, wait_for_transcripts
from tests.speech import SENTENCES

pytestmark = pytest.mark.slow  # the real daemon with a real model


def start_tail(env, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dictated.clients.tail", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_since_replays_then_follows_live_without_gap_or_duplicate(isolated_env):
    daemon = start_stdin_daemon(isolated_env)
    try:
        daemon.wait_ready()
        feed(daemon, SENTENCES[0])
        feed(daemon, SENTENCES[1])
        first_two = wait_for_transcripts(daemon, 2)

        # client 1 replays everything, then disconnects
        tail1 = start_tail(isolated_env, "--json", "--since", "0", "--count", "2")
        out1, err1 = tail1.communicate(timeout=30)
        seen1 = [json.loads(line) for line in out1.splitlines()]
        transcripts1 = [e for e in seen1 if e["topic"] == "transcript"]
        assert [t["id"] for t in transcripts1] == [t["id"] for t in first_two], err1
        last_seq = max(e["seq"] for e in seen1)

        # while no client listens, two more utterances are spoken
        feed(daemon, SENTENCES[2])
        feed(daemon, SENTENCES[3])
        wait_for_transcripts(daemon, 4)

        # client 2 reconnects from where client 1 stopped and also gets a live one
        tail2 = start_tail(isolated_env, "--json", "--since", str(last_seq), "--count", "3")
        time.sleep(1.0)
        feed(daemon, SENTENCES[4])
        out2, err2 = tail2.communicate(timeout=60)
        seen2 = [json.loads(line) for line in out2.splitlines()]
        transcripts2 = [e for e in seen2 if e["topic"] == "transcript"]
        all_transcripts = wait_for_transcripts(daemon, 5)
        assert [t["id"] for t in transcripts2] == [t["id"] for t in all_transcripts[2:5]], err2
        seqs = [e["seq"] for e in seen2]
        assert (
            seqs == sorted(set(seqs)) and min(seqs) > last_seq
        )  # no duplicate, nothing replayed twice
        assert "garden" in transcripts2[-1]["text"].lower()

        # plain output: one line of text per transcript
        tail3 = start_tail(isolated_env, "--since", "0", "--count", "5")
        out3, _ = tail3.communicate(timeout=30)
        assert out3.splitlines() == [t["text"] for t in all_transcripts]
    finally:
        daemon.stop()


def test_history_is_read_page_by_page(isolated_env):
    """A reconnecting client gets everything even when the daemon answers in pages (`more`)."""
    from dictated.clients.control import ControlClient
    from dictated.clients.subscribe import Subscription

    daemon = start_stdin_daemon(isolated_env)
    try:
        daemon.wait_ready()
        for sentence in SENTENCES[5:8]:
            feed(daemon, sentence)
        expected = wait_for_transcripts(daemon, 3)
        first_page = daemon.control.request("history", since=0, limit=1)
        assert len(first_page["events"]) == 1 and first_page["more"] is True
        control = ControlClient(daemon.control_endpoint)
        sub = Subscription(daemon.events_endpoint, control=control, since=0, page_size=1)
        got = [e.body["id"] for e in sub.events(timeout_s=1.0) if e.topic == "transcript"]
        sub.close()
        assert got == [t["id"] for t in expected]
    finally:
        daemon.stop()


def test_wait_follows_a_daemon_that_starts_later_and_restarts_while_the_client_sleeps(isolated_env):
    """--wait --topic transcript: started before any daemon; while the client is stopped (a suspended
    laptop), the daemon restarts and publishes; on waking it catches up from history at reconnect,
    with no further live event to reveal the gap."""
    tail = start_tail(isolated_env, "--json", "--topic", "transcript", "--wait", "--count", "4")
    args = ("--source", "-", "--engine", "whisper", "--linger", "0")
    daemon = start_daemon(isolated_env, *args, stdin=subprocess.PIPE)
    try:
        daemon.wait_ready()
        feed(daemon, SENTENCES[0])
        feed(daemon, SENTENCES[1])
        wait_for_transcripts(daemon, 2)
        time.sleep(0.5)
        tail.send_signal(signal.SIGSTOP)
        daemon.stop()
        daemon = start_daemon(isolated_env, *args, stdin=subprocess.PIPE)
        daemon.wait_ready()
        feed(daemon, SENTENCES[2])
        feed(daemon, SENTENCES[3])
        transcripts = wait_for_transcripts(daemon, 4)
        tail.send_signal(signal.SIGCONT)
        out, err = tail.communicate(timeout=60)
    finally:
        tail.send_signal(signal.SIGCONT)
        daemon.stop()
        if tail.poll() is None:
            tail.kill()
            tail.communicate()
    seen = [json.loads(line) for line in out.splitlines()]
    assert {e["topic"] for e in seen} == {"transcript"}
    assert [e["id"] for e in seen] == [t["id"] for t in transcripts], err
    assert "no dictated daemon is running" in err and "waiting for it" in err
    assert err.count("connected to the daemon") == 2, err
