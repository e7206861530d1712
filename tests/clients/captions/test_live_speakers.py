"""dictated-captions with two channels: against a stand-in daemon (a real PUB socket on tcp)
whose mic final comes first (files and page), and against the real daemon on two file channels
(files and dictated-tail)."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile
import zmq

from dictated.audio.load import load_audio
from dictated.protocol import encode_event, make_event
from tests.chromium import Chromium, chromium_path
from tests.clients.captions.files import read_captions, vtt_voices
from tests.clients.captions.test_live import ONSET_TOLERANCE_S, RATE, _speech_spans
from tests.conftest import DEMO_WAV
from tests.daemon_proc import start_daemon

from .test_web_speakers import ROWS_JS

LAG_S = 2.7  # the other side's copy of the demo starts this much later

MEETING = [  # (channel, speaker, text, stream start, end), in the order the finals come
    ("system", "them", "good morning everyone", 0.5, 2.0),
    ("mic", "me", "yes", 8.0, 9.0),  # said during their next sentence, final first
    ("system", "them", "so the plan for today is this", 5.0, 10.0),
    ("mic", "me", "sounds good", 11.0, 12.0),
]


@pytest.mark.skipif(chromium_path() is None, reason="needs chromium (apt-get install chromium)")
def test_captions_label_two_channels_in_time_order(isolated_env, free_port, tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_port}"
    srt, vtt = tmp_path / "meeting.srt", tmp_path / "meeting.vtt"
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(endpoint)
    captions = subprocess.Popen(
        [sys.executable, "-m", "dictated.clients.captions", "--endpoint", endpoint]
        + ["--srt", str(srt), "--vtt", str(vtt), "--web", "0", "--speaker-name", "them=Alice"],
        env=isolated_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    browser = Chromium(tmp_path / "profile")
    joined = threading.Event()
    seq = [0]  # consecutive, as a daemon's are: a gap would send the client to history

    def publish(topic: str, body: dict) -> None:
        seq[0] += 1
        pub.send_multipart(encode_event(make_event(topic, seq[0], body)))

    def announce() -> None:  # a status until the page shows it: the subscription has joined
        while not joined.is_set():
            publish("status", {"state": "ready"})
            time.sleep(0.1)

    announcer = threading.Thread(target=announce, daemon=True)
    try:
        url = re.search(r"http://\S+", captions.stderr.readline()).group(0)
        page = browser.open(url)
        announcer.start()
        page.wait_for("document.getElementById('state').textContent === 'live'", 30)
        joined.set()
        announcer.join(5)
        for n, (channel, speaker, text, start, end) in enumerate(MEETING):
            body = {"id": f"1f2e-{channel}-{n}", "text": text, "channel": channel}
            body |= {"speaker": speaker, "stream_start": start, "stream_end": end}
            publish("transcript", body)
        rows = page.wait_for(f"{ROWS_JS}.length === 4 && {ROWS_JS}", 30)
        assert [(who, text) for who, _, text in rows] == [
            ("Alice:", "good morning everyone"),
            ("Alice:", "so the plan for today is this"),
            ("me:", "yes"),
            ("me:", "sounds good"),
        ]
        assert rows[0][1] != rows[2][1]
    finally:
        browser.close()
        captions.terminate()
        _, err = captions.communicate(timeout=30)
        pub.close(0)
    assert captions.returncode == 0, err
    cues = read_captions(srt, overlap=True)  # what the window still held was written on exit
    assert [c.text for c in cues] == [
        "Alice: good morning everyone",
        "Alice: so the plan for today is this",
        "me: yes",
        "me: sounds good",
    ]
    assert [c.start for c in cues] == [0.5, 5.0, 8.0, 11.0]
    read_captions(vtt, overlap=True)
    assert [v for v, _ in vtt_voices(vtt)] == ["Alice", "Alice", "me", "me"]


@pytest.mark.slow
def test_a_two_channel_daemon_captions_each_side_at_its_own_time(isolated_env, tmp_path):
    """The real daemon on two file channels in real time (the demo, and the demo 2.7 s later
    as the other side): every cue labelled, each utterance at its true onset, the two sides
    interleaved in one valid file; dictated-tail labels the same transcripts."""
    pcm = load_audio(DEMO_WAV)
    late = tmp_path / "late.wav"
    soundfile.write(late, np.concatenate([np.zeros(int(LAG_S * RATE), pcm.dtype), pcm]), RATE)
    srt, vtt = tmp_path / "meeting.srt", tmp_path / "meeting.vtt"
    captions = subprocess.Popen(
        [sys.executable, "-m", "dictated.clients.captions", "--since", "0", "--count", "8"]
        + ["--srt", str(srt), "--vtt", str(vtt), "--speaker-name", "them=Alice"],
        env=isolated_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    tail = subprocess.Popen(
        [sys.executable, "-m", "dictated.clients.tail", "--wait", "--since", "0", "--count", "8"],
        env=isolated_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    daemon = start_daemon(
        isolated_env,
        *("--source", f"me=file:{DEMO_WAV}", "--source", f"them=file:{late}", "--realtime"),
        *("--engine", "whisper", "--linger", "3"),
    )
    try:
        _, err = captions.communicate(timeout=120)
        printed, _ = tail.communicate(timeout=60)
    finally:
        for proc in (captions, tail):
            if proc.poll() is None:
                proc.kill()
        log = daemon.stop()
    assert captions.returncode == 0, (err, log[-2000:])
    truth = [start for start, _ in _speech_spans(pcm)]
    cues = read_captions(srt, overlap=True)
    voices = [v for v, _ in vtt_voices(vtt)]
    assert [c.text.partition(": ")[0] for c in cues] == voices  # the same cues in both files
    for name, lag in (("me", 0.0), ("Alice", LAG_S)):
        mine = [c for c in cues if c.text.startswith(f"{name}: ")]
        onsets = [c.start for i, c in enumerate(mine) if i == 0 or c.start - mine[i - 1].end > 1e-3]
        assert len(onsets) == len(truth), (name, [c.text for c in cues])
        for onset, true in zip(onsets, truth, strict=True):
            assert abs(onset - (true + lag)) < ONSET_TOLERANCE_S, (name, onset, true + lag)
    assert voices[:2] == ["me", "Alice"] and len(set(voices)) == 2  # interleaved, by time
    lines = printed.splitlines()
    assert len(lines) == 8 and sum(line.startswith("[me] ") for line in lines) == 4, lines
    assert sum(line.startswith("[them] ") for line in lines) == 4, lines
