"""The asyncio worker: a bounded queue in front of exactly one inference thread that owns the engine.

The engine (CoreML models and their state, torch modules, CTranslate2) is created, used and closed
on that one thread. The queue is bounded so a slow engine pushes back on the segmenter instead of
growing memory without limit, yet nothing is dropped: `submit` waits for room.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from .audio.format import int16_to_float32
from .engines.base import Engine, Transcript
from .errors import DictatedError
from .events import Utterance

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Job:
    """One utterance to transcribe, with the wall-clock times (epoch s) the latency split needs."""

    id: str
    utterance: Utterance
    language: str
    start_wall: float  # capture time of the utterance's first sample
    speech_start_wall: float  # capture time of the detected speech onset (no pre-roll)
    speech_end_wall: float  # capture time of the end of speech
    closed_wall: float  # when the segmenter decided the utterance was over (after the hangover)
    queued_wall: float  # when the worker accepted it


@dataclass(frozen=True)
class JobResult:
    job: Job
    transcript: Transcript | None
    error: str | None  # why the engine failed, if it did
    engine_started: float
    engine_finished: float


class Worker:
    def __init__(
        self,
        load_engine: Callable[[], Engine],
        on_result: Callable[[JobResult], Awaitable[None]],
        queue_size: int = 16,
    ):
        self._load_engine = load_engine
        self._on_result = on_result
        self._queue: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=queue_size)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._unfinished: deque[Job] = deque()  # queued or running, oldest first
        self.engine: Engine | None = None
        self.completed = 0

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` on the inference thread (the only thread that may touch the engine)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def start(self) -> Engine:
        """Load and warm up the engine on the inference thread."""

        def load() -> Engine:
            engine = self._load_engine()
            engine.warmup()
            return engine

        self.engine = await self.call(load)
        return self.engine

    async def reload(self, load_engine: Callable[[], Engine], language: str) -> tuple[Engine, str]:
        """Swap in a new engine (a reloaded config) and check `language` against it.

        Loaded on the inference thread, so it waits for the utterance being transcribed and the
        next one waits for it: the swap falls between utterances. The old engine is closed there
        once the new one is warm; if loading or the language check fails, the old one stays.
        """

        def swap() -> tuple[Engine, str]:
            engine = load_engine()
            try:
                checked = engine.check_language(language)
                engine.warmup()
            except BaseException:
                engine.close()
                raise
            old, self.engine = self.engine, engine
            if old is not None:
                old.close()
            return engine, checked

        result = await self.call(swap)
        self._load_engine = load_engine
        return result

    async def submit(self, job: Job) -> None:
        """Queue a job, waiting for room if the engine is behind (never drops)."""
        if self._queue.full():
            log.warning(
                "worker: queue full (%d utterances); waiting for the engine", self._queue.qsize()
            )
        await self._queue.put(job)
        self._unfinished.append(job)

    async def close_queue(self) -> None:
        """No more jobs: `run` returns once everything queued is done."""
        await self._queue.put(None)

    def pending(self) -> int:
        return len(self._unfinished)

    def lag_s(self, now: float | None = None) -> float:
        """How far behind real time the transcripts are: age of the oldest unfinished utterance."""
        now = time.time() if now is None else now
        if not self._unfinished:
            return 0.0
        return max(0.0, now - self._unfinished[0].speech_end_wall)

    async def run(self) -> None:
        while (job := await self._queue.get()) is not None:
            started = time.time()
            try:
                transcript = await self.call(self._transcribe, job)
                error = None
            except DictatedError as exc:  # a known cause (e.g. no server answered): no traceback
                log.error("engine failed on utterance %s: %s", job.id, exc)
                transcript, error = None, f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # reported as an error event naming the utterance
                log.exception("engine failed on utterance %s", job.id)
                transcript, error = None, f"{type(exc).__name__}: {exc}"
            try:
                await self._on_result(JobResult(job, transcript, error, started, time.time()))
            except Exception:  # a failure to publish one result must not stop all later ones
                log.exception("could not deliver the result of utterance %s", job.id)
            finally:
                self._unfinished.popleft()
                self.completed += 1

    def unfinished(self) -> list[Job]:
        """Jobs queued or running and not yet delivered, oldest first."""
        return list(self._unfinished)

    def _transcribe(self, job: Job) -> Transcript:
        assert self.engine is not None, "worker.start() loads the engine first"
        return self.engine.transcribe(int16_to_float32(job.utterance.pcm), job.language)

    async def shutdown(self, timeout_s: float = 10.0) -> None:
        """Close the engine on its own thread, then stop the thread (not waiting on a hung engine)."""
        if self.engine is not None:
            try:
                await asyncio.wait_for(self.call(self.engine.close), timeout_s)
            except TimeoutError:
                log.warning("the engine did not close within %.0f s; leaving it", timeout_s)
                self._executor.shutdown(wait=False, cancel_futures=True)
                return
        self._executor.shutdown(wait=True)
