"""A topic-filtered subscriber over a real daemon: no spurious gaps, only the topics asked for."""

from __future__ import annotations

import time

import pytest

from dictated.clients.control import ControlClient
from dictated.clients.subscribe import Subscription
from tests.daemon_proc import feed, start_stdin_daemon, wait_for_transcripts
from tests.speech import SENTENCES

pytestmark = pytest.mark.slow  # the real daemon with a real model


class CountingControl(ControlClient):
    """A real control client that counts the requests it sends, by command."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sent: list[tuple[str, dict]] = []

    def request(self, cmd, **args):
        self.sent.append((cmd, args))
        return super().request(cmd, **args)


def test_transcript_only_subscriber_asks_history_once_and_gets_only_transcripts(isolated_env):
    """seq counts every topic (vad and status come between transcripts); a subscriber that asked
    only for transcripts must not take those for lost transcripts and ask history each time."""
    daemon = start_stdin_daemon(isolated_env)
    try:
        daemon.wait_ready()
        feed(daemon, SENTENCES[0])
        wait_for_transcripts(daemon, 1)  # one already journaled: replayed from history
        replaying = CountingControl(daemon.control_endpoint)
        live = CountingControl(daemon.control_endpoint)
        subs = {
            "replaying": Subscription(
                daemon.events_endpoint, control=replaying, topics=("transcript",), since=0
            ),
            "live": Subscription(daemon.events_endpoint, control=live, topics=("transcript",)),
        }
        time.sleep(0.5)  # let both subscriptions reach the publisher before speech follows
        for sentence in SENTENCES[1:4]:
            feed(daemon, sentence)
        expected = wait_for_transcripts(daemon, 4)
        got = {}
        for name, sub in subs.items():
            got[name] = []
            for event in sub.events(timeout_s=15):
                got[name].append(event)
                if event.body["id"] == expected[-1]["id"]:
                    break
            sub.close()
    finally:
        daemon.stop()
    assert all(e.topic == "transcript" for events in got.values() for e in events)
    assert [e.body["id"] for e in got["replaying"]] == [t["id"] for t in expected]
    assert [e.body["id"] for e in got["live"]] == [t["id"] for t in expected[1:]]
    # many vad events came between the transcripts, each a jump in seq for these subscribers
    assert replaying.sent == [("history", {"since": 0, "topics": ["transcript"]})]
    assert live.sent == []


def test_history_filters_by_topic(isolated_env):
    daemon = start_stdin_daemon(isolated_env)
    try:
        daemon.wait_ready()
        feed(daemon, SENTENCES[0])
        (transcript,) = wait_for_transcripts(daemon, 1)
        control = daemon.control
        assert control.request("history", since=0, topics=["error"])["events"] == []
        both = control.request("history", since=0, topics=["transcript", "error"])["events"]
        assert [e["event"]["id"] for e in both] == [transcript["id"]]
        from dictated.clients.control import CommandFailed

        for bad in ("transcript", ["nope"], [1]):
            try:
                control.request("history", since=0, topics=bad)
            except CommandFailed as exc:
                assert "'topics' must be a list of topics" in str(exc)
            else:
                raise AssertionError(f"topics={bad!r} was accepted")
    finally:
        daemon.stop()
