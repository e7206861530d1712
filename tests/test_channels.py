"""Channels without a model: the source specs and labels, speakers, the worker's per-channel
speculative lane, the annotator stages (hold, poll, flush) through the router, and the status."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from dictated.annotators import Annotator, Annotators, Final, SpeakerFromChannel
from dictated.channel_spec import ChannelSpec, parse_channel, speaker_of
from dictated.cli import _overrides, build_parser
from dictated.config import load_config
from dictated.engines.base import Transcript
from dictated.errors import ConfigError
from dictated.events import Utterance
from dictated.protocol import TranscriptBody
from dictated.router import Router
from dictated.status_view import format_status
from dictated.worker import Job, JobResult, Speculation, Worker
from tests.fake_engine import FakeEngine

# -- which sources, which labels ---------------------------------------------------------------


def test_a_spec_without_a_label_gets_its_kinds_label():
    assert parse_channel("mic", "k") == ChannelSpec("mic", "mic", labelled=False)
    assert parse_channel("system", "k").label == "system"
    assert parse_channel("-", "k").label == "stdin"
    assert parse_channel("file:/a=b/c.wav", "k") == ChannelSpec("file", "file:/a=b/c.wav", False)
    assert parse_channel("me=mic", "k") == ChannelSpec("me", "mic", labelled=True)
    assert parse_channel("them=file:x=y.wav", "k").spec == "file:x=y.wav"


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        (["Me=mic"], "label 'Me'"),
        (["me=mic", "me=system"], "two sources are labelled 'me'"),
        (["file:a.wav", "file:b.wav"], "two sources are labelled 'file'"),
        (["me=speaker"], "'speaker' is not mic, system, file:PATH or -"),
        (["x" * 33 + "=mic"], "must be 1-32"),
        (["a=-", "b=-"], "'-' is given twice"),  # stdin's bytes would be split between them
        (["a=mic", "b=mic"], "'mic' is given twice"),  # every word would be transcribed twice
    ],
)
def test_bad_sources_name_the_key(tmp_path: Path, sources: list[str], message: str):
    config = tmp_path / "config.toml"
    config.write_text(f"[audio]\nsources = {sources!r}\n".replace("'", '"'))
    with pytest.raises(ConfigError, match="audio.sources") as caught:
        load_config(config)
    assert message in str(caught.value)


def test_source_flags_repeat_and_replace_the_config_files(tmp_path: Path):
    config = tmp_path / "config.toml"
    config.write_text('[audio]\nsources = ["me=mic", "them=system"]\n[speakers]\nthem = "Ann"\n')
    assert [c.label for c in load_config(config).audio.channels()] == ["me", "them"]
    args = build_parser().parse_args(
        ["run", "--config", str(config), "--source", "a=file:x.wav", "--source", "-"]
    )
    loaded = load_config(config, _overrides(args))
    assert [(c.label, c.spec) for c in loaded.audio.channels()] == [
        ("a", "file:x.wav"),
        ("stdin", "-"),
    ]
    assert loaded.speakers == {"them": "Ann"}
    assert [c.label for c in load_config(None).audio.channels()] == ["mic"]  # today's default


def test_bad_speaker_names_are_refused(tmp_path: Path):
    config = tmp_path / "config.toml"
    config.write_text('[speakers]\nme = "evil\\u001b[2J"\n')
    with pytest.raises(ConfigError, match="speakers.me"):
        load_config(config)


def test_speakers_default_by_kind_and_label_and_none_for_one_unlabelled_source():
    mic, system = parse_channel("mic", "k"), parse_channel("system", "k")
    assert speaker_of(mic, {}, 1) is None  # today's output, no label
    assert (speaker_of(mic, {}, 2), speaker_of(system, {}, 2)) == ("me", "them")
    assert speaker_of(parse_channel("alice=mic", "k"), {}, 1) == "alice"
    assert speaker_of(mic, {"mic": "Joe"}, 1) == "Joe"


# -- the worker: one pending speculative request per channel -----------------------------------


def _speculation(label: str, n: int) -> Speculation:
    pcm = np.full(16000, 1000 * n, dtype=np.int16)
    return Speculation(f"{label}-{n}", pcm, 0, len(pcm), "en", "pause", channel=label)


def test_two_channels_speculative_requests_do_not_displace_each_other():
    decoded: list[str] = []

    async def main() -> None:
        async def on_result(result: JobResult) -> None: ...

        def on_speculative(result) -> bool:
            decoded.append(result.speculation.id)
            return False

        worker = Worker(lambda: FakeEngine(delay_s=0.2), on_result, on_speculative=on_speculative)
        await worker.start()
        worker.speculate(_speculation("a", 1))  # starts at once: the engine is free
        worker.speculate(_speculation("b", 1))  # pending, channel b
        worker.speculate(_speculation("a", 2))  # pending, channel a: b's stays
        deadline = time.monotonic() + 10
        while len(decoded) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await worker.shutdown()

    asyncio.run(main())
    assert decoded == ["a-1", "b-1", "a-2"]  # oldest channel's request first


# -- annotators, through the router ------------------------------------------------------------


def _job(n: int, channel: str) -> Job:
    pcm = np.zeros(8000, dtype=np.int16)
    u = Utterance(index=n, pcm=pcm, start_sample=0, speech_end_sample=len(pcm), reason="silence")
    now = time.time()
    return Job(f"r-{channel}-{n}", u, "en", now, now, now, now, now, channel=channel)


class HoldMic(Annotator):
    """Holds mic results until a system result comes, or for `hold_s` at most (echo's shape)."""

    def __init__(self, hold_s: float):
        self.hold_s = hold_s
        self.held: list[tuple[float, Final]] = []

    def push(self, final: Final) -> list[Final]:
        if final.channel == "mic":
            self.held.append((time.time() + self.hold_s, final))
            return []
        return [*self.flush(), final]

    def next_deadline(self) -> float | None:
        return min((d for d, _ in self.held), default=None)

    def poll(self, now: float) -> list[Final]:
        due = [f for d, f in self.held if d <= now]
        self.held = [(d, f) for d, f in self.held if d > now]
        return due

    def flush(self) -> list[Final]:
        out, self.held = [f for _, f in self.held], []
        return out


def _router(stages: list[Annotator], published: list) -> Router:
    return Router(
        None,  # type: ignore[arg-type]  # no job reaches a worker here
        published.append,
        Annotators(stages),
        language=lambda: "en",
        engine_name=lambda: "fake",
        partials=lambda: False,
        audio_dir=lambda: Path("/nonexistent"),
    )


def _result(n: int, channel: str) -> JobResult:
    now = time.time()
    return JobResult(_job(n, channel), Transcript(f"said {n}", "en"), None, now, now)


def test_a_stage_may_hold_a_result_until_its_deadline_and_later_stages_still_see_it():
    published: list = []

    async def main() -> None:
        router = _router([HoldMic(0.3), SpeakerFromChannel({"mic": "me"})], published)
        await router.on_result(_result(1, "mic"))
        assert published == []  # held
        await asyncio.sleep(0.6)  # the router polls the stage at its deadline

    asyncio.run(main())
    assert [(b.text, b.channel, b.speaker) for b in published] == [("said 1", "mic", "me")]
    assert isinstance(published[0], TranscriptBody)


def test_what_is_held_is_released_by_another_channels_result_and_by_the_drain():
    published: list = []

    async def main() -> None:
        router = _router(
            [SpeakerFromChannel({"mic": "me", "system": "them"}), HoldMic(60)], published
        )
        await router.on_result(_result(1, "mic"))
        await router.on_result(_result(2, "system"))  # releases the held mic result first
        await router.on_result(_result(3, "mic"))
        assert [b.id for b in published] == ["r-mic-1", "r-system-2"]
        router.flush()  # the drain: nothing held is lost

    asyncio.run(main())
    assert [(b.id, b.speaker) for b in published] == [
        ("r-mic-1", "me"),
        ("r-system-2", "them"),
        ("r-mic-3", "me"),
    ]


# -- status ------------------------------------------------------------------------------------


def test_status_shows_each_channel_on_its_own_line():
    text = format_status(
        {
            "state": "ready",
            "source": "microphone",
            "channels": [
                {"label": "me", "speaker": "me", "source": "microphone", "utterances": 3},
                {"label": "them", "speaker": "Ann", "source": "system", "paused": True},
            ],
        }
    )
    lines = text.splitlines()
    assert any(
        line.split() == ["channel", "me", "me:", "microphone,", "3", "utterances"] for line in lines
    ), text
    assert any(
        "channel them" in line and "Ann: system" in line and "paused" in line for line in lines
    )
    assert "channels" not in text.replace("channel ", "")  # not dumped raw at the end


# -- pause and resume one channel, through the control socket ----------------------------------


def test_pause_and_resume_name_a_channel_or_are_refused(isolated_env, free_port, tmp_path):
    from dictated.clients.control import CommandFailed
    from tests.speech import silence
    from tests.test_server import GatedSource, InProcess

    source = GatedSource(silence(3.0), gates=(SR_GATE,))
    run = InProcess(isolated_env, free_port, source, FakeEngine(), tmp_path).start()
    assert source.wait_at(SR_GATE)
    with pytest.raises(CommandFailed, match="'channel' must be one of mic, got 'them'"):
        run.control.request("pause", channel="them")
    assert run.control.request("pause", channel="mic")["state"] == "paused"
    status = run.control.request("status")
    assert [(c["label"], c["paused"]) for c in status["channels"]] == [("mic", True)]
    assert run.control.request("resume", channel="mic")["state"] == "ready"
    source.go.set()
    assert run.finish() == 0


SR_GATE = 16000  # one second into the signal


def test_a_source_that_cannot_open_stops_the_start_with_exit_2_naming_it(isolated_env, tmp_path):
    import subprocess

    from tests.conftest import DEMO_WAV
    from tests.daemon_proc import daemon_command

    missing = tmp_path / "missing.wav"
    result = subprocess.run(
        daemon_command("--source", f"a=file:{DEMO_WAV}", "--source", f"b=file:{missing}"),
        env=isolated_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr  # no such file: a restart cannot help
    assert str(missing) in result.stderr and "Traceback" not in result.stderr


def test_the_stages_are_the_speaker_then_echo_only_for_a_mic_and_system_pair(tmp_path: Path):
    from dictated.echo_stage import EchoStage
    from dictated.router import stages_for

    config = tmp_path / "config.toml"
    config.write_text('[audio]\nsources = ["me=mic", "them=system"]\n')
    stages = stages_for(load_config(config))
    assert [type(s) for s in stages] == [SpeakerFromChannel, EchoStage]
    assert [type(s) for s in stages_for(load_config(None))] == [SpeakerFromChannel]


class Broken(Annotator):
    def push(self, final: Final) -> list[Final]:
        raise RuntimeError("a bug in a stage")


def test_a_stage_that_raises_loses_nothing(caplog):
    published: list = []

    async def main() -> None:
        router = _router([Broken(), SpeakerFromChannel({"mic": "me"})], published)
        await router.on_result(_result(1, "mic"))

    asyncio.run(main())
    assert [(b.id, b.speaker) for b in published] == [("r-mic-1", "me")]  # later stages still ran
    assert "an annotator stage failed" in caplog.text


def test_a_channels_finished_speculation_survives_another_channels():
    """Channel a's pause was decoded, then channel b's: a's final still takes a's text instead
    of decoding again (one finished result per channel; review of issue 16)."""
    stats = {}

    async def main() -> None:
        async def on_result(result: JobResult) -> None: ...

        worker = Worker(lambda: FakeEngine(delay_s=0.1), on_result, on_speculative=lambda r: False)
        await worker.start()
        runner = asyncio.create_task(worker.run())
        worker.speculate(_speculation("a", 1))
        worker.speculate(_speculation("b", 1))
        deadline = time.monotonic() + 10
        while worker.speculation.started < 2 or worker._running is not None:
            assert time.monotonic() < deadline, "the two speculative decodes did not finish"
            await asyncio.sleep(0.05)
        pcm = np.full(16000, 1000, dtype=np.int16)  # what a-1 decoded: the utterance as it ended
        u = Utterance(
            index=1, pcm=pcm, start_sample=0, speech_end_sample=len(pcm), reason="silence"
        )
        now = time.time()
        await worker.submit(Job("a-1", u, "en", now, now, now, now, now, channel="a"))
        await worker.close_queue()
        await runner
        await worker.shutdown()
        stats.update(reused=worker.speculation.reused, wasted=worker.speculation.wasted)

    asyncio.run(main())
    assert stats == {"reused": 1, "wasted": 1}  # a's taken by its final; b's never used
