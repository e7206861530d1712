"""Push-to-talk, toggle and typing through the daemon's control socket, in-process.

Real sockets, real segmenters and webrtcvad, a gated source so each command lands at a known
sample; the FakeEngine's text is a fingerprint of the audio it got, so a transcript says
exactly which stretch of the input became it.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from dictated.audio.format import SAMPLE_RATE, int16_to_float32
from dictated.clients.control import CommandFailed
from dictated.control_state import ControlOptions
from tests.fake_engine import FakeEngine, fingerprint
from tests.speech import SENTENCES, compose
from tests.test_server import GatedSource, InProcess

SR = SAMPLE_RATE
PREROLL = 6400  # the default 400 ms


def daemon(env, port, source, tmp_path, **control) -> InProcess:
    run = InProcess(env, port, source, FakeEngine(), tmp_path)
    d = run.daemon  # InProcess builds the config; the [control] section is this test's
    options = ControlOptions(**control)
    d.config = dataclasses.replace(d.config, control=options)
    d.control.options, d.control.mode, d.control.armed = options, options.mode, options.armed
    return run


def statuses(run: InProcess) -> list[dict]:
    return run.of("status")


def test_push_to_talk_transcribes_exactly_the_held_audio(isolated_env, free_port, tmp_path):
    signal = compose(SENTENCES[:3], 1.6, lead_s=0.5)
    s = signal.spoken
    press = (s[0].end_sample // 1600 + 7) * 1600  # 0.7 s into the pause after the first
    release = (s[1].end_sample // 1600 + 2) * 1600
    source = GatedSource(signal.pcm, (press, release))
    run = daemon(isolated_env, free_port, source, tmp_path, mode="push-to-talk").start()
    assert source.wait_at(press)
    reply = run.control.request("ptt", action="press")
    assert reply == {"mode": "push-to-talk", "held": True, "armed": True, "listening": True}
    assert run.control.request("ptt", action="press")["held"] is True  # idempotent
    run.receive(lambda events: any(b.get("held") for t, b in events if t == "status"))
    source.go.set()
    assert source.wait_at(release)
    assert run.control.request("status")["held"] is True
    assert run.control.request("ptt", action="release")["held"] is False
    assert run.control.request("ptt", action="release")["held"] is False  # idempotent
    source.go.set()
    assert run.finish() == 0

    (transcript,) = run.of("transcript")  # the first and third sentences: never an utterance
    assert transcript["text"] == fingerprint(
        int16_to_float32(signal.pcm[press - PREROLL : release])
    )
    assert transcript["reason"] == "key" and transcript["by_key"] is True
    assert transcript["armed"] is True and "command" not in transcript
    (start,) = [b for b in run.of("vad") if b["event"] == "speech_start"]
    assert start["id"] == transcript["id"] and start["stream_time"] == press / SR
    held = [b["held"] for b in statuses(run)]
    assert held[-3:] == [True, False, False]  # at the press, at the release, stopped
    assert {b["mode"] for b in statuses(run)} == {"push-to-talk"}


def test_a_key_in_continuous_mode_closes_the_utterance_the_voice_opened(
    isolated_env, free_port, tmp_path
):
    """Pressed mid-sentence: the utterance under way is split at the press's pre-roll (the
    part before ends, not by key: `--armed-by-key` types none of it) and the keyed one runs from
    there to the release, not a hangover later; nothing lost or doubled. The sentences around
    are the VAD's."""
    signal = compose(SENTENCES[:3], 1.6, lead_s=0.5)
    s = signal.spoken
    press = ((s[1].start_sample + s[1].end_sample) // 2) // 1600 * 1600
    release = (s[1].end_sample // 1600 + 1) * 1600
    source = GatedSource(signal.pcm, (press, release))
    run = daemon(isolated_env, free_port, source, tmp_path).start()
    assert source.wait_at(press)
    assert run.control.request("ptt", action="press")["mode"] == "continuous"
    source.go.set()
    assert source.wait_at(release)
    run.control.request("ptt", action="release")
    source.go.set()
    assert run.finish() == 0

    transcripts = run.of("transcript")
    assert [t["by_key"] for t in transcripts] == [False, False, True, False]
    assert [t["reason"] for t in transcripts] == ["silence", "key", "key", "silence"]
    starts = [b["id"] for b in run.of("vad") if b["event"] == "speech_start"]
    assert starts == [t["id"] for t in transcripts]
    before, keyed = transcripts[1], transcripts[2]
    split = press - PREROLL
    assert release - round(keyed["audio_s"] * SR) == split  # the keyed one begins at the split
    # the part before: the sentence's start, heard by the VAD, up to the split (speech times)
    assert before["stream_start"] * SR < split and before["stream_end"] * SR <= split + 16
    assert keyed["text"] == fingerprint(int16_to_float32(signal.pcm[split:release]))


def test_toggle_and_typing_switch_and_say_so_at_once(isolated_env, free_port, tmp_path):
    signal = compose(SENTENCES[:1], 1.0, lead_s=1.5)
    source = GatedSource(signal.pcm, (8000,))  # before the sentence
    run = daemon(isolated_env, free_port, source, tmp_path).start()
    assert source.wait_at(8000)
    control = run.control
    assert control.request("typing", armed=False)["armed"] is False
    run.receive(lambda events: any(b.get("armed") is False for t, b in events if t == "status"))
    assert control.request("status")["armed"] is False
    assert control.request("typing", armed="toggle")["armed"] is True
    for bad in ("on", 1, None, ["toggle"]):
        with pytest.raises(CommandFailed, match="'armed' must be true, false or \"toggle\""):
            control.request("typing", armed=bad)

    off = control.request("toggle")
    assert (off["listening"], off["state"]) == (False, "paused")
    with pytest.raises(CommandFailed, match="listening is off"):
        control.request("ptt", action="press")
    assert control.request("status")["listening"] is False
    on = control.request("toggle")
    assert (on["listening"], on["state"]) == (True, "ready")
    for bad in ({}, {"action": "down"}, {"action": "press", "channel": "nope"}):
        with pytest.raises(CommandFailed, match="'action' must|'channel' must"):
            control.request("ptt", **bad)
    source.go.set()
    assert run.finish() == 0
    listening = [b["listening"] for b in statuses(run)]
    assert listening[-3:] == [False, True, True]  # off, on again, stopped
    (transcript,) = run.of("transcript")
    assert transcript["armed"] is True and transcript["by_key"] is False


def test_the_ptt_command_loads_no_audio_or_model_stack(isolated_env):
    """A key binding runs `dictated ptt press` on every press: it reads the config (which checks
    the Silero model is there) and sends one request, without importing numpy, onnxruntime or
    an engine (0.23-0.28 s a command with numpy, 0.16 s without, on this machine)."""
    code = (
        "import sys\n"
        "from dictated.cli import main\n"
        "rc = main(['ptt', 'release'])\n"
        "heavy = {'numpy', 'onnxruntime', 'ctranslate2', 'faster_whisper', 'torch', 'soxr'}\n"
        "print(rc, sorted(heavy & {m.partition('.')[0] for m in sys.modules}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=isolated_env, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split(None, 1) == ["1", "[]\n"], done.stdout + done.stderr
    assert "no dictated daemon is running" in done.stderr  # it ran, and said why it failed
