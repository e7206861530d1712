"""The microphone source through real PortAudio, on ALSA devices written per test process (tests/alsa.py).

Each test runs a scenario in a fresh Python whose ALSA_CONFIG_PATH points at a config made for it;
the scenario functions below (`scenario_*`) run there and return JSON, the tests assert here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soxr

from dictated.audio.format import SAMPLE_RATE
from dictated.audio.mic import BLOCK_MS
from dictated.audio.mic_stream import IDLE_BLOCK_MS
from tests import alsa, speech

pytestmark = pytest.mark.skipif(
    alsa.portaudio_missing_reason() is not None, reason=str(alsa.portaudio_missing_reason())
)

RATE = 16_000


# ---- scenarios (run inside the child process) --------------------------------------------------


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append({"level": record.levelname, "message": record.getMessage()})


def _watch_logs() -> _Records:
    handler = _Records()
    logger = logging.getLogger("dictated")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return handler


async def _collect(source, samples: int, on_block=None) -> tuple[list, list]:
    blocks, stamps = [], []
    async with contextlib.aclosing(source.blocks()) as stream:
        async for block in stream:
            assert block.pcm.dtype == np.int16 and block.pcm.ndim == 1
            blocks.append(block.pcm)
            stamps.append(block.captured_at)
            if on_block is not None:
                on_block(len(blocks))
            if sum(len(b) for b in blocks) >= samples:
                break
    await source.aclose()
    return blocks, stamps


def scenario_capture(
    device,
    samples: int,
    out: str,
    options: dict | None = None,
    via_open_source: bool = False,
    idle: bool = True,
) -> dict:
    from dictated.audio.mic import MicSource
    from dictated.audio.open_source import open_source

    logs = _watch_logs()
    started = time.time()
    if via_open_source:
        source = open_source("mic", device=device)
    else:
        source = MicSource(device, **(options or {}))
    source.set_idle(idle)
    blocks, stamps = asyncio.run(_collect(source, samples))
    np.save(out, np.concatenate(blocks))
    return {
        "description": source.description,
        "device_rate": source.device_rate,
        "realtime": source.realtime,
        "blocks": len(blocks),
        "block_sizes": sorted({len(b) for b in blocks[:-1]}),
        "stamps_ordered": bool(np.all(np.diff(stamps) >= -1e-3)),
        "stamps_in_run": bool(started - 1.0 <= min(stamps) and max(stamps) <= time.time()),
        "logs": logs.records,
    }


def scenario_rate_probe(device: str) -> dict:
    """What PortAudio itself says about the device's rates (the reference for 'refuses 16 kHz')."""
    import sounddevice as sd

    supported = {}
    for rate in (16_000, 48_000):
        try:
            sd.check_input_settings(device=device, samplerate=rate, channels=1, dtype="int16")
            supported[rate] = True
        except sd.PortAudioError:
            supported[rate] = False
    return {
        "supported": {str(k): v for k, v in supported.items()},
        "default_samplerate": sd.query_devices(device)["default_samplerate"],
    }


def scenario_devices(good: list, bad: list) -> dict:
    from dictated.audio.devices import format_device_table, list_input_devices, resolve_device
    from dictated.audio.mic import MicSource
    from dictated.audio.open_source import open_source
    from dictated.errors import AudioError

    devices = list_input_devices()
    failures = []
    for spec in bad:
        try:
            resolve_device(spec)
        except AudioError as exc:
            failures.append([spec, str(exc)])
    constructors = []
    for make in (
        lambda: MicSource("no-such-mic"),
        lambda: open_source("mic", device="no-such-mic"),
    ):
        try:
            make()
        except AudioError as exc:
            constructors.append(str(exc))
    return {
        "devices": [dataclasses.asdict(d) for d in devices],
        "table": format_device_table(devices),
        "resolved": [[spec, resolve_device(spec)] for spec in good],
        "failures": failures,
        "constructors": constructors,
    }


def scenario_stall(fifo: str, pcm_file: str) -> dict:
    """The device delivers what is in the pipe, then blocks in read(): PortAudio stops calling back."""
    fd = os.open(fifo, os.O_RDWR)  # a writer must exist before PortAudio probes (opens) the device
    pcm = np.load(pcm_file)
    os.write(fd, pcm.tobytes())  # smaller than the pipe buffer: never blocks
    from dictated.audio.mic import AudioDeviceLost, MicSource

    logs = _watch_logs()
    source = MicSource("stall", stall_timeout_s=0.5, close_timeout_s=0.5)
    got: list = []
    error = None
    started = time.monotonic()

    async def main() -> None:
        async with contextlib.aclosing(source.blocks()) as stream:
            async for block in stream:
                got.append(block.pcm)

    try:
        asyncio.run(main())
    except AudioDeviceLost as exc:
        error = str(exc)
    elapsed = time.monotonic() - started
    os.close(fd)  # end of file releases PortAudio's thread, so the abandoned stream can close
    closers = [t for t in threading.enumerate() if t.name == "dictated-mic-close"]
    for thread in closers:
        thread.join(10)
    received = np.concatenate(got) if got else np.zeros(0, np.int16)
    return {
        "error": error,
        "elapsed": elapsed,
        "received": len(received),
        "written": len(pcm),
        # what was in the pipe arrives verbatim; a last partial read may be padded with stale data
        "prefix_equal": bool(np.array_equal(received[: len(pcm)], pcm[: len(received)])),
        "closer_finished": all(not t.is_alive() for t in closers),
        "logs": logs.records,
    }


def scenario_default_replaced(fifo_a: str, fifo_b: str, asound: str, pcm_file: str) -> dict:
    """No device pinned: the default input stalls, the system default becomes another device
    (the ALSA world is rewritten), and the source carries on from the new default."""
    from dictated.audio.mic import MicSource

    fa, fb = os.open(fifo_a, os.O_RDWR), os.open(fifo_b, os.O_RDWR)
    pcm = np.load(pcm_file)
    os.write(fa, np.zeros(RATE // 2, "<i2").tobytes())  # half a second, then the stall
    logs = _watch_logs()
    source = MicSource(None, reconnect=True, stall_timeout_s=0.5, backoff_s=(0.2,))
    states: list[str] = []
    back_at: list[int] = []  # how many blocks had arrived when the device was back

    done = threading.Event()

    def replug() -> None:  # the new default delivers the speech, then room silence
        os.write(fb, pcm.astype("<i2").tobytes())
        while not done.is_set():
            os.write(fb, np.zeros(RATE // 10, "<i2").tobytes())
            time.sleep(0.1)

    def on_state(state: str, detail) -> None:
        states.append(state)
        if state == "ok" and states.count("ok") == 2:
            back_at.append(len(got))
        if state == "lost" and states.count("lost") == 1:
            alsa.write_config(
                Path(asound),
                [
                    alsa.fifo_capture("mic_a", Path(fifo_a)),
                    alsa.fifo_capture("mic_b", Path(fifo_b)),
                ],
                default="mic_b",
            )
            os.write(fa, np.zeros(RATE, "<i2").tobytes())  # the stuck driver finishes its read
            threading.Thread(target=replug, daemon=True).start()

    source.on_device_state = on_state
    got, gaps = [], []

    async def main() -> None:
        async with contextlib.aclosing(source.blocks()) as stream:
            async for block in stream:
                got.append(block.pcm)
                gaps.append(block.gap_s)
                if back_at and sum(map(len, got[back_at[0] :])) > len(pcm):
                    break
        await source.aclose()

    asyncio.run(main())
    after = np.concatenate(got[back_at[0] :])
    done.set()
    time.sleep(0.2)
    os.close(fa)  # end of file releases a driver still stuck in a read, so its stream closes
    for thread in [t for t in threading.enumerate() if t.name == "dictated-mic-close"]:
        thread.join(10)
    os.close(fb)
    return {
        "states": states,
        "device": source.device,
        "gap_s": gaps[back_at[0]],
        "after_equal": bool(np.array_equal(after[: len(pcm)], pcm)),
        "logs": logs.records,
    }


def scenario_stream_ended(device: str) -> dict:
    """PortAudio ends the stream underneath the source, as it does when a device fails."""
    from dictated.audio.mic import AudioDeviceLost, MicSource

    source = MicSource(device)

    def end_stream(n_blocks: int) -> None:
        if n_blocks == 5:
            source._stream.abort()  # the stream finishes; PortAudio calls the finished callback

    error = None
    try:
        asyncio.run(_collect(source, 10**9, on_block=end_stream))
    except AudioDeviceLost as exc:
        error = str(exc)
    return {"error": error}


def scenario_status_flags(device: str) -> dict:
    import sounddevice as sd

    from dictated.audio.mic import MicSource

    logs = _watch_logs()
    source = MicSource(device)
    for _ in range(3):
        flags = sd.CallbackFlags()
        flags.input_overflow = True
        source._note_status(flags)  # what the loop does with a block whose status has the flag
    return {"overflows": source.overflows, "logs": logs.records}


def scenario_missing_portaudio() -> dict:
    import ctypes.util

    ctypes.util.find_library = lambda name: None  # as on a machine without libportaudio2
    from dictated.audio.open_source import open_source
    from dictated.errors import MissingDependencyError

    try:
        open_source("mic")
    except MissingDependencyError as exc:
        return {"error": str(exc), "package": exc.package, "cause": repr(exc.__cause__)}
    return {"error": None}


# ---- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """Speech files at 16 and 48 kHz and an ALSA config with every kind of test device."""
    root = tmp_path_factory.mktemp("alsa")
    pcm16 = np.concatenate([speech.silence(0.2), speech.synthesize(speech.SENTENCES[0])])
    pcm48 = soxr.resample(pcm16, RATE, 48_000, quality="HQ")
    (root / "speech16.raw").write_bytes(pcm16.astype("<i2").tobytes())
    (root / "speech48.raw").write_bytes(pcm48.astype("<i2").tobytes())
    config = alsa.write_config(
        root / "asound.conf",
        [
            alsa.speech_capture("speech", root / "speech16.raw"),
            alsa.rate_locked_capture("speech48", root / "speech48.raw", 48_000),
            alsa.speech_capture("wide48", root / "speech48.raw"),
            alsa.silent_capture("silent"),
            alsa.playback_only("speaker"),
        ],
        default="speech",
    )
    return {"root": root, "config": config, "pcm16": pcm16, "pcm48": pcm48}


def _warnings(result: dict) -> list[str]:
    return [r["message"] for r in result["logs"] if r["level"] == "WARNING"]


# ---- tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "via_open_source", "idle"),
    [("speech", True, True), (None, False, False)],
    ids=["by-name-idle", "default-speaking"],
)
def test_capture_at_16k_delivers_the_device_samples_verbatim(
    world, tmp_path, device, via_open_source, idle
):
    ref = world["pcm16"]
    out = tmp_path / "got.npy"
    result = alsa.run_scenario(
        world["config"],
        "tests.audio.test_mic",
        "scenario_capture",
        device=device,
        samples=len(ref),
        out=str(out),
        via_open_source=via_open_source,
        idle=idle,
    )
    got = np.load(out)
    assert result["device_rate"] == RATE
    assert result["description"] == ("mic:speech" if device else "mic:default")
    assert result["realtime"] is True
    assert len(got) >= len(ref)
    np.testing.assert_array_equal(got[: len(ref)], ref)
    # while idle several callbacks reach the loop at once (fewer wakeups); while someone speaks,
    # every callback is handed over as it comes
    block_ms = IDLE_BLOCK_MS if idle else BLOCK_MS
    assert result["block_sizes"] == [SAMPLE_RATE * block_ms // 1000], result["block_sizes"]
    assert result["stamps_ordered"] and result["stamps_in_run"]
    assert _warnings(result) == []


def test_device_that_refuses_16k_is_opened_at_its_rate_and_resampled(world, tmp_path):
    probe = alsa.run_scenario(
        world["config"], "tests.audio.test_mic", "scenario_rate_probe", device="speech48"
    )
    assert probe["supported"] == {"16000": False, "48000": True}  # PortAudio's own verdict
    assert probe["default_samplerate"] == 48_000

    pcm48 = world["pcm48"]
    reference = soxr.resample(pcm48, 48_000, RATE, quality="HQ")  # offline, whole signal at once
    n = len(reference) - RATE // 10  # the streaming resampler holds back a few ms at the end
    for device, options in [("speech48", {}), ("wide48", {"samplerate": 48_000})]:
        out = tmp_path / f"{device}.npy"
        result = alsa.run_scenario(
            world["config"],
            "tests.audio.test_mic",
            "scenario_capture",
            device=device,
            samples=n,
            out=str(out),
            options=options,
        )
        got = np.load(out)[:n]
        assert result["device_rate"] == 48_000, device
        assert any("resampled to 16000 Hz" in r["message"] for r in result["logs"]), result["logs"]
        diff = np.abs(got.astype(np.int32) - reference[:n].astype(np.int32))
        assert diff.max() <= 4, (device, diff.max())  # int16 rounding only: same soxr, same state
        # and the speech survived the 16k -> 48k -> 16k round trip
        original = world["pcm16"][:n].astype(np.float64)
        corr = np.corrcoef(original, got.astype(np.float64))[0, 1]
        assert corr > 0.999, (device, corr)
        assert _warnings(result) == []


def test_devices_are_listed_and_chosen_by_name_or_index(world):
    result = alsa.run_scenario(
        world["config"],
        "tests.audio.test_mic",
        "scenario_devices",
        good=["speech", "SPEECH", "ch4", "wide", "silent"],
        bad=["sp", "no-such-mic", "  ", 10_000],
    )
    by_name = {d["name"]: d for d in result["devices"]}
    assert set(by_name) == {"speech", "speech48", "wide48", "silent", "default"}  # not "speaker"
    assert [n for n, d in by_name.items() if d["is_default"]] == ["default"]
    assert by_name["speech48"]["default_samplerate"] == 48_000
    assert all(d["hostapi"] == "ALSA" and d["channels"] > 0 for d in by_name.values())

    resolved = dict((spec, index) for spec, index in result["resolved"])
    assert resolved["speech"] == by_name["speech"]["index"]  # exact name beats substring "speech48"
    assert resolved["SPEECH"] == by_name["speech"]["index"]
    assert resolved["ch4"] == by_name["speech48"]["index"]
    assert resolved["wide"] == by_name["wide48"]["index"]
    assert resolved["silent"] == by_name["silent"]["index"]

    failures = dict((str(spec), message) for spec, message in result["failures"])
    assert "2 input devices match 'sp'" in failures["sp"]
    assert "speech48" in failures["sp"] and "silent" not in failures["sp"]
    for name in by_name:
        assert name in failures["no-such-mic"]  # the error lists what there is
    assert "empty name" in failures["  "]
    assert "10000 is not an input device" in failures["10000"]

    assert len(result["constructors"]) == 2
    assert all("no input device matches 'no-such-mic'" in m for m in result["constructors"])
    assert (
        "*" in result["table"] and "speech48" in result["table"] and "48000 Hz" in result["table"]
    )


def test_device_indices_select_devices(world, tmp_path):
    listing = alsa.run_scenario(
        world["config"], "tests.audio.test_mic", "scenario_devices", good=[], bad=[]
    )
    indices = {d["name"]: d["index"] for d in listing["devices"]}
    speaker_index = next(i for i in range(10) if i not in indices.values())
    result = alsa.run_scenario(
        world["config"],
        "tests.audio.test_mic",
        "scenario_devices",
        good=[indices["speech48"], str(indices["speech48"])],
        bad=[speaker_index],  # the playback-only device
    )
    assert [index for _, index in result["resolved"]] == [indices["speech48"]] * 2
    assert "is not an input device" in result["failures"][0][1]
    out = tmp_path / "got.npy"
    capture = alsa.run_scenario(
        world["config"],
        "tests.audio.test_mic",
        "scenario_capture",
        device=indices["speech48"],
        samples=RATE,
        out=str(out),
    )
    assert capture["description"] == "mic:speech48" and capture["device_rate"] == 48_000


@pytest.mark.parametrize(
    "blocks",
    [4.17, 6.1],
    ids=["whole-idle-batches", "idle-batch-not-yet-handed-over"],
)
def test_a_stalled_device_raises_instead_of_hanging(tmp_path, world, blocks):
    """While idle, callbacks reach the loop IDLE_BLOCK_MS at a time; a stall part-way through the
    second batch leaves callbacks no wake-up announced, and they must still arrive (nothing
    captured before a loss is lost)."""
    fifo = tmp_path / "mic.fifo"
    os.mkfifo(fifo)
    config = alsa.write_config(
        tmp_path / "asound.conf", [alsa.fifo_capture("stall", fifo)], default="stall"
    )
    pcm = world["pcm16"][: int(blocks * RATE * BLOCK_MS / 1000)]
    np.save(tmp_path / "pcm.npy", pcm)
    result = alsa.run_scenario(
        config,
        "tests.audio.test_mic",
        "scenario_stall",
        fifo=str(fifo),
        pcm_file=str(tmp_path / "pcm.npy"),
    )
    assert result["error"] is not None, result
    assert "audio device 'stall' vanished/stopped: no audio for 0.5 s" in result["error"]
    assert result["received"] >= result["written"] - 480 and result["prefix_equal"], result
    # PortAudio's thread was stuck in the driver: the source gave up waiting instead of hanging,
    # and the stream closed for real once the device let go
    assert any("did not stop within 0.5 s" in w for w in _warnings(result)), result["logs"]
    assert result["closer_finished"]


def test_with_no_device_pinned_a_lost_default_is_replaced_by_the_new_default(tmp_path, world):
    fifo_a, fifo_b = tmp_path / "a.fifo", tmp_path / "b.fifo"
    os.mkfifo(fifo_a)
    os.mkfifo(fifo_b)
    config = alsa.write_config(
        tmp_path / "asound.conf",
        [alsa.fifo_capture("mic_a", fifo_a), alsa.fifo_capture("mic_b", fifo_b)],
        default="mic_a",
    )
    pcm = world["pcm16"][: 2 * RATE]
    np.save(tmp_path / "pcm.npy", pcm)
    result = alsa.run_scenario(
        config,
        "tests.audio.test_mic",
        "scenario_default_replaced",
        fifo_a=str(fifo_a),
        fifo_b=str(fifo_b),
        asound=str(config),
        pcm_file=str(tmp_path / "pcm.npy"),
    )
    assert result["states"] == ["ok", "lost", "ok"], result
    # the device list and the ALSA world are read again: the new default's audio arrives,
    # verbatim, after the gap
    assert result["after_equal"], result
    # the dead time is reported with the first block after it (how long depends on how the
    # capture times of this unpaced test device fall; the daemon test sees seconds of it)
    assert result["gap_s"] >= 0.0
    messages = [r["message"] for r in result["logs"]]
    assert any("vanished/stopped: no audio for 0.5 s" in m for m in messages), messages
    assert any("is back" in m for m in messages), messages


def test_a_stream_ended_by_portaudio_raises(world):
    result = alsa.run_scenario(
        world["config"], "tests.audio.test_mic", "scenario_stream_ended", device="speech"
    )
    assert result["error"] == (
        "audio device 'speech' vanished/stopped: "
        "PortAudio ended the stream (unplugged, or its driver failed)"
    )


def test_all_zero_input_warns_once_about_microphone_permission(world, tmp_path):
    result = alsa.run_scenario(
        world["config"],
        "tests.audio.test_mic",
        "scenario_capture",
        device="silent",
        samples=10 * RATE,
        out=str(tmp_path / "got.npy"),
    )
    got = np.load(tmp_path / "got.npy")
    assert len(got) >= 10 * RATE and not got.any()
    warnings = _warnings(result)
    assert len(warnings) == 1, warnings
    assert "exact digital silence" in warnings[0]
    assert "Privacy & Security › Microphone" in warnings[0]
    assert sys.executable in warnings[0] or "python" in warnings[0]


def test_overflow_flags_are_counted_and_reported_without_flooding(world):
    result = alsa.run_scenario(
        world["config"], "tests.audio.test_mic", "scenario_status_flags", device="speech"
    )
    assert result["overflows"] == 3
    warnings = _warnings(result)
    assert len(warnings) == 1 and "1 overflow(s)" in warnings[0], warnings


def test_missing_portaudio_is_a_clear_error():
    result = alsa.run_scenario(None, "tests.audio.test_mic", "scenario_missing_portaudio")
    assert result["package"] == "the PortAudio library"
    assert "PortAudio library not found" in result["cause"]
    assert "apt install libportaudio2" in result["error"]
    assert result["error"].startswith("Microphone capture")


def test_mic_module_does_not_import_sounddevice_until_used():
    code = (
        "import sys\n"
        "import dictated.audio.source, dictated.audio.devices, dictated.audio.mic\n"
        "assert 'sounddevice' not in sys.modules, 'imported too early'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
