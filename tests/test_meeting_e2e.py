"""A two-party online meeting captioned by one daemon, end to end (issue 16's "done when").

The other side comes out of the computer: a real PulseAudio server's default output, which the
`them=system` channel records. The user's microphone track holds their own sentences and the other
side's audio at -10 dB with room echo (tests/meeting_audio.py: real espeak-ng speech, sox-style
echo); it reaches the `me` channel as a live stream on stdin, written in real time from the moment
the other side starts playing. Real Whisper transcribes both; real `dictated-captions` writes
SRT and WebVTT, read back by the independent `srt` and `webvtt` parsers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests import pulse
from tests.clients.captions.files import read_captions, vtt_voices
from tests.daemon_proc import REPO, start_daemon, wait_for_transcripts
from tests.echo_replay import echoes_of, wer
from tests.meeting_audio import build_meeting, write_wav

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(pulse.missing_reason() is not None, reason=str(pulse.missing_reason())),
]

CHUNK = 1600  # 100 ms of the microphone track per write


def _speak_into(stdin, pcm: np.ndarray, t0: float) -> None:
    """Write the microphone track as a live microphone would deliver it: in real time."""
    for i in range(0, len(pcm), CHUNK):
        delay = t0 + i / 16000 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        stdin.write(pcm[i : i + CHUNK].astype("<i2").tobytes())
        stdin.flush()


def test_one_daemon_captions_both_sides_of_a_meeting_without_echo(isolated_env, tmp_path):
    meeting = build_meeting(echo_db=-10.0)
    system_wav = write_wav(tmp_path / "them.wav", meeting.system)
    config = tmp_path / "config.toml"
    config.write_text('[echo]\nnear = ["me"]\nfar = ["them"]\n')  # stdin stands in for the mic
    srt, vtt = tmp_path / "meeting.srt", tmp_path / "meeting.vtt"
    with pulse.running(("speakers",)) as server:
        env = {**isolated_env, **server.env, "PATH": os.environ["PATH"]}
        daemon = start_daemon(
            env,
            *("--config", str(config), "--engine", "whisper", "--linger", "0"),
            *("--source", "me=-", "--source", "them=system"),
            stdin=subprocess.PIPE,
        )
        captions = None
        try:
            daemon.wait_ready(120)
            captions = subprocess.Popen(
                [sys.executable, "-m", "dictated.clients.captions.cli"]
                + ["--srt", str(srt), "--vtt", str(vtt)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                cwd=REPO,
            )
            time.sleep(1.0)  # the captions client connects
            t0 = time.monotonic()
            player = server.play(system_wav, "@DEFAULT_SINK@")
            _speak_into(daemon.proc.stdin, meeting.mic, t0)
            assert player.wait(30) == 0
            spoken = len(meeting.near) + len(meeting.far)
            transcripts = wait_for_transcripts(daemon, spoken - 2, timeout_s=60)
            time.sleep(8.0)  # the last finals (an echo-held one waits at most 6 s)
            transcripts = wait_for_transcripts(daemon, len(transcripts), timeout_s=5)
        finally:
            log = daemon.stop()
            if captions is not None:
                captions.send_signal(signal.SIGINT)
                captions.wait(30)

    by_channel: dict[str, list[str]] = {"me": [], "them": []}
    for t in transcripts:
        assert t["speaker"] == t["channel"], t  # explicit labels name the speakers
        by_channel[t["channel"]].append(t["text"])
    far_sentences = [s.text for s in meeting.far]
    mine, theirs = " ".join(by_channel["me"]), " ".join(by_channel["them"])
    print({"me": by_channel["me"], "them": by_channel["them"]})
    print(
        f"WER me {wer(meeting.near_text, mine):.3f}, them {wer(' '.join(far_sentences), theirs):.3f}"
    )
    assert echoes_of(far_sentences, by_channel["me"]) == 0, log  # no second copy on the mic
    assert wer(meeting.near_text, mine) <= 0.15, log  # every one of the user's sentences
    assert wer(" ".join(far_sentences), theirs) <= 0.15, log  # the other side, from the speakers

    cues = read_captions(srt, overlap=True)
    labels = {cue.lines[0].split(":")[0] for cue in cues}
    assert labels == {"me", "them"}, [c.lines for c in cues]
    assert {voice for voice, _ in vtt_voices(vtt)} == {"me", "them"}
