"""The remote engine against a hostile or broken server (tests/engines/remote/hostile_server.py).

Whatever a server answers, the engine holds a bounded amount of it: a huge body is refused after
`MAX_ANSWER_BYTES` (not read to its end), a 200 that is not the JSON asked for is an error of the
utterance, a text longer than the audio can hold is cut and marked truncated, an endless stream
ends at that same cap. A real HTTP server in a thread; no vLLM needed.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from dictated.engines.remote.engine import RemoteEngine
from dictated.engines.remote.options import RemoteOptions
from dictated.errors import ConfigError, RemoteError
from tests.engines.remote.hostile_server import Answer, HostileServer

MB = 1024 * 1024
SECONDS = 2.0
#: what docs/remote.md promises: a body over 2 MiB is refused; text is capped at 200 characters
#: plus 50 a second of audio (300 for these 2 s)
MAX_ANSWER_BYTES = 2 * MB
MAX_CHARS = 300


def pcm(seconds: float = SECONDS) -> np.ndarray:
    return np.zeros(int(16000 * seconds), dtype=np.float32)


def engine_for(server: HostileServer, **options) -> RemoteEngine:
    defaults = {"timeout_s": 10.0, "backoff_s": 0.1, "max_backoff_s": 0.1}
    return RemoteEngine(RemoteOptions(urls=(server.url,), **{**defaults, **options}))


@pytest.mark.parametrize("size_mb", [64, 300])
@pytest.mark.parametrize("content_length", [False, True], ids=["no-length", "length"])
def test_a_huge_answer_is_an_error_and_is_not_read_to_its_end(size_mb, content_length):
    with HostileServer(Answer.huge(size_mb * MB, content_length=content_length)) as server:
        engine = engine_for(server)
        started = time.monotonic()
        with pytest.raises(RemoteError, match="answer is over 2 MiB, which no transcript is"):
            engine.transcribe(pcm(), "en")
        assert time.monotonic() - started < 5
        # what the server got out before the client hung up: the cap plus socket buffers
        assert server.sent < MAX_ANSWER_BYTES + 16 * MB, server.sent
        assert not engine.pool.health()[0].healthy  # the server is at fault: sat out
        engine.close()


def test_a_200_login_page_is_an_error_never_a_transcript():
    with HostileServer(Answer.html(), Answer.json("back to normal")) as server:
        engine = engine_for(server)
        with pytest.raises(RemoteError) as failure:
            engine.transcribe(pcm(), "en")
        message = str(failure.value)
        assert "text/html, not the JSON transcript asked for" in message
        assert "Corporate proxy: please sign in" in message  # what answered, said in one line
        assert "\n" not in message
        time.sleep(0.2)  # past the backoff
        assert engine.transcribe(pcm(), "en").text == "back to normal"
        engine.close()


def test_a_text_longer_than_the_audio_can_hold_is_cut_and_marked_truncated():
    long_text = "word " * 100_000  # 500 kB: under the byte cap, far over 2 s of speech
    with HostileServer(Answer.json(long_text)) as server:
        engine = engine_for(server)
        transcript = engine.transcribe(pcm(), "en")
        assert transcript.truncated
        assert 0 < len(transcript.text) <= MAX_CHARS
        assert transcript.text.endswith("word")  # cut after a word
        engine.close()


def test_a_normal_answer_is_neither_cut_nor_flagged():
    with HostileServer(Answer.json("Hello there.")) as server:
        transcript = engine_for(server).transcribe(pcm(), "en")
        assert transcript.text == "Hello there." and not transcript.truncated


def test_an_endless_stream_of_deltas_ends_at_the_text_cap():
    with HostileServer(Answer.endless_sse()) as server:
        engine = engine_for(server, stream=True, timeout_s=30.0)
        partials: list[str] = []
        started = time.monotonic()
        transcript = engine.transcribe(pcm(), "en", on_partial=partials.append)
        assert time.monotonic() - started < 5  # not the 30 s timeout
        assert transcript.truncated and len(transcript.text) <= MAX_CHARS
        assert transcript.text.startswith("again again")
        assert all(len(p) <= MAX_CHARS for p in partials)
        assert engine.pool.health()[0].healthy  # a truncated answer is still an answer
        engine.close()


def test_an_endless_stream_without_text_ends_at_the_byte_cap():
    with HostileServer(Answer.endless_empty_sse()) as server:
        engine = engine_for(server, stream=True, timeout_s=30.0)
        started = time.monotonic()
        with pytest.raises(RemoteError, match="over 2 MiB"):
            engine.transcribe(pcm(), "en")
        assert time.monotonic() - started < 10  # not the 30 s timeout
        engine.close()


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://192.0.2.10:8000/v1", False),  # plain http to another machine
        ("https://192.0.2.10:8000/v1", True),
        ("http://127.0.0.1:8000/v1", True),
        ("http://localhost:8000/v1", True),
    ],
)
def test_an_api_key_is_not_sent_in_clear_text_to_another_machine(url, allowed):
    options = RemoteOptions(urls=(url,), allow_remote=True, api_key="sk-secret-1234")
    if allowed:
        RemoteEngine(options).close()
        return
    with pytest.raises(ConfigError) as failure:
        RemoteEngine(options)
    message = str(failure.value)
    assert "unencrypted" in message and "allow_insecure_api_key" in message
    assert "sk-secret-1234" not in message
    # the explicit setting, or no key at all, lets it through
    RemoteEngine(RemoteOptions(urls=(url,), allow_remote=True)).close()
    insecure = RemoteOptions(
        urls=(url,), allow_remote=True, api_key="sk-secret-1234", allow_insecure_api_key=True
    )
    RemoteEngine(insecure).close()


def test_a_warmup_refused_for_the_request_itself_is_a_config_error():
    """A 401 or 404 at start does not go away by waiting: exit 2, not a retry loop."""
    from tests.engines.remote.fault_proxy import Fault, FaultProxy

    with FaultProxy(1) as proxy:  # upstream never reached: every request gets the fault
        proxy.set(Fault.http(401))
        engine = RemoteEngine(RemoteOptions(urls=(proxy.url,), timeout_s=5.0))
        with pytest.raises(ConfigError, match="HTTP 401.*check the URL"):
            engine.warmup()
        proxy.set(Fault.http(503))
        time.sleep(engine.pool.health()[0].retry_in_s or 0)
        with pytest.raises(RemoteError) as failure:  # a server not ready yet: waiting may help
            engine.warmup()
        assert not isinstance(failure.value, ConfigError)
        engine.close()


def test_a_warmup_refused_with_the_whisper_fallback_transcribes_locally(caplog):
    """The user asked for local transcription whenever the servers fail: a 401 at start is such
    a time (the log says what to check), not an exit."""
    from tests.engines.remote.fault_proxy import Fault, FaultProxy

    with FaultProxy(1) as proxy:
        proxy.set(Fault.http(401))
        engine = RemoteEngine(RemoteOptions(urls=(proxy.url,), timeout_s=5.0, fallback="whisper"))
        try:
            with caplog.at_level("WARNING"):
                engine.warmup()  # no exception: whisper is loaded and warm
        finally:
            engine.close()
    assert "HTTP 401" in caplog.text and "check the URL" in caplog.text
    assert "whisper will transcribe" in caplog.text
