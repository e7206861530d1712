"""Streamed text reaches the daemon's partials throttled: at most one per interval, newest wins.

The real worker runs the real remote engine against a real HTTP server streaming vLLM-shaped
deltas (tests/engines/remote/hostile_server.py); what the worker hands to `on_stream` is what the
daemon publishes as `partial` events.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from dictated.engines.remote.engine import RemoteEngine
from dictated.engines.remote.options import RemoteOptions
from dictated.events import Utterance
from dictated.worker import Job, JobResult, Worker
from tests.engines.remote.hostile_server import Answer, HostileServer

SECONDS = 30  # room for the text below under the engine's characters-per-second cap


def job() -> Job:
    pcm = np.zeros(16000 * SECONDS, dtype=np.int16)
    utterance = Utterance(
        index=0, pcm=pcm, start_sample=0, speech_end_sample=len(pcm), reason="silence"
    )
    return Job("u1", utterance, "en", 0.0, 0.0, 0.0, 0.0, 0.0)


def run_one(server: HostileServer, **worker_options) -> tuple[list[tuple[float, str]], JobResult]:
    """One streamed utterance through a worker: the (time, text) it streamed, then its result."""
    streamed: list[tuple[float, str]] = []
    results: list[JobResult] = []
    options = RemoteOptions(urls=(server.url,), stream=True, timeout_s=20.0)

    async def on_result(result: JobResult) -> None:
        results.append(result)
        streamed.append((time.monotonic(), "<final>"))

    async def main() -> None:
        worker = Worker(
            lambda: RemoteEngine(options),
            on_result,
            on_stream=lambda job, text: streamed.append((time.monotonic(), text)),
            **worker_options,
        )
        await worker.start()
        runner = asyncio.create_task(worker.run())
        await worker.submit(job())
        await worker.close_queue()
        await asyncio.wait_for(runner, 30)
        await worker.shutdown()

    asyncio.run(main())
    (result,) = results
    assert streamed[-1][1] == "<final>", streamed  # nothing of the stream after its result
    return streamed[:-1], result


def test_a_flood_of_deltas_becomes_a_few_partials_not_one_per_delta():
    deltas = tuple(f"w{i % 10}" for i in range(600))  # 600 deltas, 1200 characters
    with HostileServer(Answer.json("warm"), Answer.sse(deltas)) as server:
        streamed, result = run_one(server)  # the default interval: 1 s
    assert result.transcript is not None and result.transcript.text == "".join(deltas)
    texts = [text for _, text in streamed]
    assert 1 <= len(texts) <= 3, len(texts)  # was 600 events, 360 kB of text in all
    assert texts[0] == "w0"  # the first text is shown at once
    assert all(result.transcript.text.startswith(t) for t in texts)


def test_text_waiting_at_the_end_of_an_interval_is_shown_then_even_if_the_stream_pauses():
    answer = Answer.sse(("Hel", "lo", " there"), pause_s=1.5)  # then a server-side pause
    with HostileServer(Answer.json("warm"), answer) as server:
        streamed, result = run_one(server, stream_interval_s=lambda: 0.5)
    texts = [text for _, text in streamed]
    assert texts == ["Hel", "Hello there"], texts  # newest wins; shown before the stream ends
    assert streamed[1][0] - streamed[0][0] < 1.2  # by the timer, not by the end of the pause
    assert result.transcript is not None and result.transcript.text == "Hello there"
