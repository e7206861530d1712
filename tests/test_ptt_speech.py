"""Push-to-talk and voice commands end to end: the real daemon (embedded Whisper tiny.en) reading
real speech (espeak-ng) streamed into its stdin in real time, commands from the CLI's control
client, events at a real ZeroMQ subscriber.

The time from each release to its final at the subscriber is printed (`-s` shows it), not
asserted: speed is the benchmarks' business, and this machine is shared.
"""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from tests.daemon_proc import DaemonProcess, start_stdin_daemon
from tests.events import TimedEvents
from tests.speech import SENTENCES, silence, synthesize

pytestmark = pytest.mark.slow  # the real daemon with a real model, in real time

SR = 16_000


class Speaker:
    """Writes audio into the daemon's stdin at the pace it would be spoken."""

    def __init__(self, daemon: DaemonProcess):
        self._daemon = daemon

    def say(self, *parts: np.ndarray) -> None:
        pcm = np.concatenate(parts)
        t0 = time.monotonic()
        for i in range(0, len(pcm), 1600):  # 100 ms at a time
            self._daemon.feed(pcm[i : i + 1600].astype("<i2").tobytes())
            delay = t0 + (i + 1600) / SR - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


@pytest.fixture
def ptt_daemon(isolated_env):
    daemon = start_stdin_daemon(isolated_env, "--mode", "push-to-talk")
    status = daemon.wait_ready()
    sub = TimedEvents(daemon.events_endpoint)
    time.sleep(0.3)  # the subscription reaches the daemon before anything is said
    yield daemon, sub, status
    sub.close()
    daemon.stop()


def test_push_to_talk_transcribes_only_the_held_speech(ptt_daemon):
    daemon, sub, status = ptt_daemon
    assert (status["mode"], status["held"], status["listening"]) == ("push-to-talk", False, True)
    speaker, control = Speaker(daemon), daemon.control
    before, held, after, quick = SENTENCES[0], SENTENCES[1], SENTENCES[2], SENTENCES[3]
    speaker.say(silence(0.8), synthesize(before), silence(1.2))  # nobody pressed: not text
    assert control.request("ptt", action="press")["held"] is True
    speaker.say(silence(0.2), synthesize(held), silence(0.35))  # a breath, then the key up
    released = [time.time()]
    assert control.request("ptt", action="release")["held"] is False
    speaker.say(silence(1.0), synthesize(after), silence(1.0))  # after the release: not text
    control.request("ptt", action="press")
    speaker.say(silence(0.2), synthesize(quick))  # the key comes up right after the last word
    released.append(time.time())
    control.request("ptt", action="release")
    speaker.say(silence(2.0))

    finals = sub.wait("transcript", 2)
    time.sleep(0.5)
    finals = sub.of("transcript")
    assert len(finals) == 2, [b["text"] for b, _ in finals]
    for (body, _), sentence in zip(finals, (held, quick), strict=True):
        said = words(body["text"])
        assert len(said & words(sentence)) >= 0.7 * len(words(sentence)), body["text"]
        assert body["by_key"] is True and body["reason"] == "key" and body["armed"] is True
    heard = words(" ".join(b["text"] for b, _ in finals))
    assert not heard & {"train", "crowded", "commuters", "thursday", "budget", "proposal"}
    statuses = [b for b, _ in sub.of("status")]
    assert [b["held"] for b in statuses].count(True) == 2  # a status event at each press
    kinds = ("after a pause", "right after speech")
    for (body, at), up, kind in zip(finals, released, kinds, strict=True):
        print(
            f"\nrelease -> final at the subscriber ({kind}): {at - up:.3f} s "
            f"(engine {body['timings_ms'].get('engine', 0):.0f} ms, speculative "
            f"{body['timings_ms'].get('speculative', 0):.0f} ms, audio {body['audio_s']} s)"
        )


def test_spoken_commands_switch_typing_and_are_marked(isolated_env):
    daemon = start_stdin_daemon(isolated_env)
    daemon.wait_ready()
    sub = TimedEvents(daemon.events_endpoint)
    time.sleep(0.3)
    try:
        speaker = Speaker(daemon)
        for text in ("Stop dictation.", SENTENCES[4], "Start dictation.", SENTENCES[5]):
            speaker.say(silence(0.5), synthesize(text), silence(1.5))
        finals = [b for b, _ in sub.wait("transcript", 4)]
        assert daemon.control.request("status")["armed"] is True
    finally:
        sub.close()
        daemon.stop()
    assert [f.get("command") for f in finals] == [
        "stop_dictation",
        None,
        "start_dictation",
        None,
    ], [f["text"] for f in finals]
    assert [f["armed"] for f in finals] == [False, False, True, True]
    assert [f["by_key"] for f in finals] == [False] * 4
    armed = [b["armed"] for b, _ in sub.of("status")]
    assert armed[-2:] == [False, True]  # each switch published at once


def test_sighup_switches_the_mode(isolated_env, tmp_path):
    """`[control] mode` applies on reload: the VAD's utterances before, the key's only after."""
    import signal

    config = tmp_path / "config.toml"
    config.write_text('[control]\nmode = "continuous"\n')
    daemon = start_stdin_daemon(isolated_env, "--config", str(config))
    daemon.wait_ready()
    sub = TimedEvents(daemon.events_endpoint)
    time.sleep(0.3)

    def feed(*parts: np.ndarray) -> None:  # read as fast as written; then it is all consumed
        daemon.feed(np.concatenate(parts).astype("<i2").tobytes())
        time.sleep(0.5)

    try:
        feed(silence(0.5), synthesize(SENTENCES[6]), silence(1.5))
        sub.wait("transcript", 1)
        config.write_text('[control]\nmode = "push-to-talk"\n')
        daemon.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while daemon.control.request("status")["mode"] != "push-to-talk":
            assert time.monotonic() < deadline, "the reload did not apply the mode"
            time.sleep(0.1)
        feed(silence(0.5), synthesize(SENTENCES[7]), silence(1.5))  # no key: not an utterance
        daemon.control.request("ptt", action="press")
        feed(silence(0.2), synthesize(SENTENCES[8]), silence(0.3))
        daemon.control.request("ptt", action="release")
        sub.wait("transcript", 2)
        feed(silence(1.0))
    finally:
        sub.close()
        daemon.stop()
    texts = [b["text"].lower() for b, _ in sub.of("transcript")]
    assert len(texts) == 2 and "piano" in texts[0] and "breeze" in texts[1], texts
    assert [b["by_key"] for b, _ in sub.of("transcript")] == [False, True]
