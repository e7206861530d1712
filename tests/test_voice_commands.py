"""`[control]`: its checks, and the last annotator stage (typing state and voice commands)."""

from __future__ import annotations

import numpy as np
import pytest

from dictated.annotators import Annotators, Final, SpeakerFromChannel
from dictated.channel_spec import parse_channels
from dictated.config import load_config
from dictated.control_state import (
    ControlOptions,
    ControlState,
    normalise_phrase,
    voice_channel,
)
from dictated.errors import ConfigError
from dictated.events import Utterance
from dictated.protocol import ErrorBody, TranscriptBody
from dictated.router import stages_for
from dictated.voice_commands import TypingState
from dictated.worker import Job


def final(text: str, channel: str = "mic", by_key: bool = False, n: int = 1) -> Final:
    u = Utterance(n, np.zeros(16_000, np.int16), 0, 16_000, "key" if by_key else "silence",
                  by_key=by_key)  # fmt: skip
    body = TranscriptBody(
        id=f"r-{n}", text=text, language="en", start=1.0, end=2.0, speech_start=1.0,
        stream_start=0.0, stream_end=1.0, audio_s=1.0, latency_ms=1.0, engine="whisper",
        truncated=False, reason=u.reason, channel=channel,
    )  # fmt: skip
    return Final(body, Job(f"r-{n}", u, "en", 1.0, 1.0, 2.0, 2.0, 2.0, channel))


def stage(**options) -> tuple[TypingState, ControlState, list[int]]:
    changes: list[int] = []
    control = ControlState(ControlOptions(**options), on_change=lambda: changes.append(1))
    return TypingState(control, command_channel="mic"), control, changes


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("Stop dictation.", "stop_dictation"),
        ("  stop, DICTATION!  ", "stop_dictation"),
        ("Start dictation", "start_dictation"),
        ("Please stop dictation now.", None),  # a command is the whole utterance
        ("Start the dictation.", "start_dictation"),  # articles aside
        ("Stop a dictation", "stop_dictation"),
        ("Start dictation, please.", None),  # any other word: a sentence being dictated
        ("The stop dictation now", None),
        ("Stop.", None),
        ("", None),
    ],
)
def test_a_final_that_is_a_command_switches_typing_and_says_so(text, command):
    typing, control, changes = stage(armed=command != "start_dictation")
    (out,) = typing.push(final(text))
    assert out.body.command == command
    assert out.body.armed is (command != "stop_dictation")  # the new state
    assert control.armed is out.body.armed and len(changes) == (command is not None)


def test_every_final_says_armed_and_by_key_and_commands_count_on_the_first_channel_only():
    typing, control, _ = stage()
    (keyed,) = typing.push(final("Hello there.", by_key=True))
    assert (keyed.body.by_key, keyed.body.armed, keyed.body.command) == (True, True, None)
    (far,) = typing.push(final("Stop dictation.", channel="them", n=2))
    assert far.body.command is None and control.armed  # someone else's voice commands nothing
    (own,) = typing.push(final("Stop dictation.", n=3))
    assert own.body.command == "stop_dictation"
    (after,) = typing.push(final("This is not typed.", n=4))
    assert after.body.armed is False and after.body.command is None
    error = Final(ErrorBody(message="failed", id="r-5"), final("x").job)
    assert typing.push(error) == [error]  # an error event passes unchanged


def test_voice_commands_can_be_off_and_phrases_configured():
    typing, control, _ = stage(voice_commands=False)
    (out,) = typing.push(final("Stop dictation."))
    assert out.body.command is None and control.armed
    typing, control, _ = stage(stop_phrases=("go to sleep",), start_phrases=("wake up",))
    assert typing.push(final("Go to sleep."))[0].body.command == "stop_dictation"
    assert typing.push(final("Stop dictation.", n=2))[0].body.command is None
    assert typing.push(final("Wake up!", n=3))[0].body.armed is True


def test_the_stage_is_last_so_an_emptied_echo_is_no_command(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[control]\nmode = "push-to-talk"\narmed = false\n')
    loaded = load_config(config)
    assert loaded.control.mode == "push-to-talk" and loaded.control.armed is False
    control = ControlState(loaded.control)
    stages = stages_for(loaded, control)
    assert [type(s) for s in stages] == [SpeakerFromChannel, TypingState]
    suppressed = final("Stop dictation.")
    suppressed = Final(
        TranscriptBody(**{**suppressed.body.fields(), "text": "", "suppressed": "echo",
                          "suppressed_text": "Stop dictation."}), suppressed.job,
    )  # fmt: skip
    (out,) = Annotators(stages).push(suppressed)
    assert out.body.command is None and out.body.armed is False


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('mode = "hold"', "control.mode"),
        ("armed = 1", "control.armed"),
        ('voice_commands = "yes"', "control.voice_commands"),
        ('stop_phrases = "stop dictation"', "control.stop_phrases"),
        ('stop_phrases = ["..."]', "control.stop_phrases"),
        ('start_phrases = ["Stop dictation!"]', "control.start_phrases"),
        ('start_phrases = ["Stop the dictation"]', "control.start_phrases"),  # the same, said
        ('stop_phrases = ["the"]', "control.stop_phrases"),  # no word but an article
        ('hotkey = "F9"', "control.hotkey"),
    ],
)
def test_bad_control_config_names_the_key(tmp_path, toml, key):
    config = tmp_path / "config.toml"
    config.write_text(f"[control]\n{toml}\n")
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(config)


def test_normalise_phrase():
    assert normalise_phrase("Stop—dictation…") == "stop dictation"
    assert normalise_phrase("Don't STOP.") == "dont stop"


@pytest.mark.parametrize(
    ("sources", "label"),
    [
        (["them=system", "me=mic"], "me"),  # the microphone, wherever it is listed
        (["mic", "system"], "mic"),
        (["a=file:/x.wav", "b=-"], "a"),  # no microphone: the first channel
    ],
)
def test_commands_and_the_key_belong_to_the_microphone_channel(tmp_path, sources, label):
    """One helper decides the user's own channel: voice commands count there only (the last
    annotator stage) and `ptt` without a channel holds the key there."""
    assert voice_channel(parse_channels(sources, "audio.sources")).label == label
    config = tmp_path / "config.toml"
    config.write_text(f"[audio]\nsources = {sources!r}\n".replace("'", '"'))
    control = ControlState(ControlOptions())
    typing_stage = stages_for(load_config(config), control)[-1]
    others = [c for c in (c.split("=")[0] for c in sources) if c != label]
    (mine,) = typing_stage.push(final("Stop dictation.", channel=label))
    assert mine.body.command == "stop_dictation" and not control.armed
    for n, other in enumerate(others, 2):
        (theirs,) = typing_stage.push(final("Start dictation.", channel=other, n=n))
        assert theirs.body.command is None and not control.armed
