"""The worker: one inference thread, nothing dropped, and one failure never stops the rest."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from dictated.engines import EngineOptions, create_engine
from dictated.events import Utterance
from dictated.worker import Job, Worker
from tests.speech import SENTENCES, silence, synthesize

pytestmark = pytest.mark.slow  # a real model end to end


def job(n: int, pcm: np.ndarray) -> Job:
    utterance = Utterance(
        index=n, pcm=pcm, start_sample=0, speech_end_sample=len(pcm), reason="silence"
    )
    return Job(
        id=f"j{n}",
        utterance=utterance,
        language="en",
        start_wall=0.0,
        speech_start_wall=0.0,
        speech_end_wall=0.0,
        closed_wall=0.0,
        queued_wall=0.0,
    )


def test_a_failed_delivery_does_not_stop_later_utterances():
    delivered: list[str] = []
    threads: set[str] = set()

    async def on_result(result):
        threads.add(threading.current_thread().name)
        if result.job.id == "j0":
            raise OSError("disk full")  # e.g. the journal refused the write
        delivered.append(result.transcript.text.lower())

    async def main() -> Worker:
        worker = Worker(lambda: create_engine("whisper", EngineOptions()), on_result, queue_size=1)
        await worker.start()
        runner = asyncio.create_task(worker.run())
        for n, sentence in enumerate(SENTENCES[:3]):
            await worker.submit(
                job(n, np.concatenate([silence(0.3), synthesize(sentence), silence(0.3)]))
            )
        await worker.close_queue()
        await asyncio.wait_for(runner, 120)
        await worker.shutdown()
        return worker

    worker = asyncio.run(main())
    assert worker.completed == 3 and worker.unfinished() == [] and worker.lag_s() == 0.0
    assert len(delivered) == 2 and "way home" in delivered[0] and "meet" in delivered[1]
    assert threads == {"MainThread"}  # results come back to the event loop's thread
