"""The remote engine against a real vLLM server (tiny random Whisper), faults through a real proxy.

The reference is the server itself asked directly with the standard library (tests/vllm_server.py),
never our client. Faults come from tests/engines/remote/fault_proxy.py standing between the engine and vLLM.
"""

from __future__ import annotations

import io
import logging
import time

import numpy as np
import pytest
import soundfile

from dictated.audio.format import SAMPLE_RATE, int16_to_float32
from dictated.engines.remote.engine import RemoteEngine
from dictated.engines.remote.options import RemoteOptions
from dictated.errors import RemoteError
from tests.engines.remote.fault_proxy import Fault, FaultProxy
from tests.speech import SENTENCES, silence, synthesize

pytestmark = pytest.mark.vllm


def utterance(i: int) -> np.ndarray:
    """int16 speech as the segmenter hands it over: pre-roll, the sentence, some trailing quiet."""
    return np.concatenate([silence(0.3), synthesize(SENTENCES[i]), silence(0.5)])


def reference_wav(pcm: np.ndarray) -> bytes:
    """The same samples as a WAV written by soundfile, not by the engine's encoder."""
    buffer = io.BytesIO()
    soundfile.write(buffer, pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def engine_for(server, *urls: str, **options) -> RemoteEngine:
    defaults = {"model": server.served_name, "timeout_s": 20.0, "backoff_s": 0.3}
    return RemoteEngine(RemoteOptions(urls=urls or (server.base_url,), **{**defaults, **options}))


@pytest.fixture
def proxy(vllm_whisper):
    with FaultProxy(vllm_whisper.port) as p:
        yield p


@pytest.fixture
def proxy2(vllm_whisper):
    with FaultProxy(vllm_whisper.port) as p:
        yield p


def test_text_equals_what_the_server_answers_directly(vllm_whisper):
    engine = engine_for(vllm_whisper)
    for i in (0, 1):
        pcm = utterance(i)
        expected = vllm_whisper.transcribe(reference_wav(pcm), language="en").strip()
        got = engine.transcribe(int16_to_float32(pcm), "en")
        assert expected and got.text == expected
        assert got.language == "en" and got.engine is None and got.timings_ms["request"] > 0
    engine.close()


def test_streamed_answer_gives_the_same_text_and_growing_partials(vllm_whisper):
    pcm = int16_to_float32(utterance(2))
    plain = engine_for(vllm_whisper).transcribe(pcm, "en").text
    partials: list[str] = []
    streamed = engine_for(vllm_whisper, stream=True).transcribe(
        pcm, "en", on_partial=partials.append
    )
    assert streamed.text == plain
    assert len(partials) > 1, partials
    assert all(b.startswith(a) for a, b in zip(partials, partials[1:], strict=False))
    assert partials[-1].strip() == plain


def test_an_idle_connection_closed_by_the_server_is_retried_transparently(vllm_whisper):
    """uvicorn drops keep-alive connections idle for 5 s; the next utterance must not fail."""
    engine = engine_for(vllm_whisper)
    pcm = int16_to_float32(utterance(0))
    first = engine.transcribe(pcm, "en").text
    time.sleep(6)
    assert engine.transcribe(pcm, "en").text == first
    (health,) = engine.pool.health()
    assert health.failed == 0 and health.succeeded == 2


def test_request_form_and_bearer_key_and_the_key_is_never_logged(vllm_whisper, proxy, caplog):
    key = "sk-test-0123456789"
    engine = engine_for(vllm_whisper, proxy.url, api_key=key, fields=("max_completion_tokens=8",))
    caplog.set_level(logging.DEBUG)
    engine.transcribe(int16_to_float32(utterance(0)), "de")
    (seen,) = proxy.seen
    assert seen.request_line.startswith("POST /v1/audio/transcriptions ")
    assert seen.headers["authorization"] == f"Bearer {key}"
    assert seen.headers["content-type"].startswith("multipart/form-data; boundary=")
    for name, value in [
        ("model", "tiny-whisper"),
        ("language", "de"),
        ("temperature", "0"),
        ("response_format", "json"),
        ("max_completion_tokens", "8"),
    ]:
        assert f'name="{name}"\r\n\r\n{value}\r\n'.encode() in seen.body
    wav = seen.body.split(b"Content-Type: audio/wav\r\n\r\n", 1)[1]
    audio, rate = soundfile.read(io.BytesIO(wav.rsplit(b"\r\n--", 1)[0]), dtype="int16")
    assert rate == SAMPLE_RATE and np.array_equal(audio, utterance(0))
    proxy.set(Fault.http(500))
    with pytest.raises(RemoteError):
        engine.transcribe(int16_to_float32(utterance(0)), "en")
    assert key not in caplog.text and key not in repr(engine.options)


def test_the_other_url_takes_over_when_one_of_two_fails(vllm_whisper, proxy, proxy2):
    proxy.set(Fault.http(500))
    engine = engine_for(vllm_whisper, proxy.url, proxy2.url, backoff_s=60, max_backoff_s=60)
    texts = [engine.transcribe(int16_to_float32(utterance(i)), "en").text for i in range(4)]
    assert all(texts)
    assert proxy.count() == 1 and proxy2.count() == 4  # tried once, then sat out
    bad, good = engine.pool.health()
    assert not bad.healthy and "HTTP 500" in bad.last_error and bad.retry_in_s > 0
    assert good.healthy and good.latency_ms > 0 and good.succeeded == 4
    info = engine.status_info()["servers"]
    assert [s["url"] for s in info] == [proxy.url, proxy2.url] and info[1]["healthy"]


def test_slow_server_times_out_then_recovers(vllm_whisper, proxy):
    engine = engine_for(vllm_whisper, proxy.url, timeout_s=10.0)  # > a loaded box's answer
    pcm = int16_to_float32(utterance(0))
    proxy.set(Fault.slow(120))
    with pytest.raises(RemoteError, match="timed out after 10 s") as failure:
        engine.transcribe(pcm, "en")
    assert proxy.url in str(failure.value)
    proxy.set(Fault.passthrough())
    time.sleep(engine.pool.health()[0].retry_in_s or 0)
    assert engine.transcribe(pcm, "en").text


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (Fault.http(500), "HTTP 500"),
        (Fault.http(503), "HTTP 503"),
        (Fault.drop(), "closed the connection"),
    ],
)
def test_server_errors_fail_the_utterance_then_recover(vllm_whisper, proxy, fault, message):
    engine = engine_for(vllm_whisper, proxy.url)
    pcm = int16_to_float32(utterance(0))
    proxy.set(fault)
    with pytest.raises(RemoteError, match=message):
        engine.transcribe(pcm, "en")
    proxy.set(Fault.passthrough())
    time.sleep(engine.pool.health()[0].retry_in_s or 0)
    assert engine.transcribe(pcm, "en").text
    assert engine.pool.health()[0].healthy


def test_429_retry_after_is_honoured(vllm_whisper, proxy):
    engine = engine_for(vllm_whisper, proxy.url)
    pcm = int16_to_float32(utterance(0))
    proxy.set(Fault.http(429, retry_after="3"))
    with pytest.raises(RemoteError, match="HTTP 429.*retry after 3 s"):
        engine.transcribe(pcm, "en")
    proxy.set(Fault.passthrough())
    with pytest.raises(RemoteError, match="retried in"):  # not asked again before it said
        engine.transcribe(pcm, "en")
    assert proxy.count() == 1
    (health,) = engine.pool.health()
    assert 0 < health.retry_in_s <= 3.0
    time.sleep(health.retry_in_s)
    assert engine.transcribe(pcm, "en").text and proxy.count() == 2


def test_refused_connections_then_the_server_returns(vllm_whisper, proxy):
    engine = engine_for(vllm_whisper, proxy.url)
    pcm = int16_to_float32(utterance(0))
    proxy.refuse()
    with pytest.raises(RemoteError, match="connection refused"):
        engine.transcribe(pcm, "en")
    proxy.restore()
    time.sleep(engine.pool.health()[0].retry_in_s or 0)
    assert engine.transcribe(pcm, "en").text


def test_warmup_and_health_are_real_requests(vllm_whisper, proxy, proxy2):
    engine = engine_for(vllm_whisper, proxy.url, proxy2.url)
    proxy2.refuse()
    engine.warmup()  # one answers: fine
    assert proxy.count() == 1
    up, down = engine.health()
    assert up.healthy and up.latency_ms > 0
    assert not down.healthy and "connection refused" in down.last_error
    proxy.set(Fault.http(500))
    with pytest.raises(RemoteError, match="warm-up: no transcription server answered") as failure:
        engine.warmup()
    assert proxy.url in str(failure.value) and proxy2.url in str(failure.value)


def test_fallback_to_local_whisper_then_back_to_the_server(vllm_whisper, proxy):
    engine = engine_for(vllm_whisper, proxy.url, fallback="whisper")
    proxy.refuse()
    engine.warmup()  # no server, but the fallback is loaded and warm: not an error
    pcm = int16_to_float32(utterance(0))
    local = engine.transcribe(pcm, "en")
    assert local.engine == "whisper"
    assert "morning train" in local.text.lower()  # real speech recognition, not the random model
    proxy.restore()
    time.sleep(engine.pool.health()[0].retry_in_s or 0)
    remote = engine.transcribe(pcm, "en")
    assert (
        remote.engine is None
        and remote.text == vllm_whisper.transcribe(reference_wav(utterance(0))).strip()
    )
    engine.close()
