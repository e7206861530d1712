"""The asyncio worker: a bounded queue in front of exactly one inference thread that owns the engine.

The engine (CoreML models and their state, torch modules, CTranslate2) is created, used and closed
on that one thread. The queue is bounded so a slow engine pushes back on the segmenter instead of
growing memory without limit, yet nothing is dropped: `submit` waits for room.

Beside the FIFO of finished utterances runs a speculative lane: decodes of the utterance still
being spoken (at a pause, or for a partial result). Its rules:

- at most one speculative decode in flight, and only while no final is queued or running (a
  final always goes first); a newer request replaces one of its channel not yet started (each
  channel keeps one pending request, started oldest first, so channels do not displace each
  other);
- a final whose utterance has no speech the speculative decode did not hear (same first sample,
  speech ended inside the audio it covered: the extents decide, not timing) takes that result
  as its own, without a second decode, waiting for it if it is still running;
- any other speculative decode still running when a final comes, or cancelled because speech
  resumed, is cancelled: an interruptible engine stops between tokens (Cohere) or stages (Whisper:
  features, encoder, decoder), so a final waits for one step of it, not for all of it (on the
  clean session a final once waited 0.6 s behind such a decode); any other engine runs on and its
  result is discarded;
- each speculative decode ends up used (it became the final, or the caller showed it as a
  partial) or wasted; both are counted (`SpeculationStats`).

Text streamed by a final decode (a remote server's deltas) reaches `on_stream` at most once per
`stream_interval_s`, the newest text winning, and never after that job's result: a server sending
thousands of deltas costs a few partial events, not one event per delta with the whole text.

Every final passes the non-speech guard (nonspeech.py): an utterance the segmenter heard too
little speech in is not decoded, and a text the engine made up from noise is dropped; either way
its final is delivered, with empty text and the reason (`JobResult.dropped`), and counted.

A warm-up no server answered (at login the network may not be up yet) is tried again with backoff
(warmup.py) instead of failing the start; `waiting` says why meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, TypeVar

from .audio.format import int16_to_float32
from .engines.base import Cancelled, Engine, Transcript
from .errors import DictatedError
from .jobs import Job, JobResult, Speculation, SpeculationStats, SpeculativeResult
from .nonspeech import NonSpeechGuard, describe
from .stream_throttle import StreamThrottle
from .warmup import warm_up

__all__ = ["Job", "JobResult", "Speculation", "SpeculationStats", "SpeculativeResult", "Worker"]
log = logging.getLogger(__name__)
T = TypeVar("T")

#: ids of utterances whose final was submitted, remembered so a late speculative result of one is
#: never shown as a partial after (or instead of) its final; far more than can be in flight
_ENDED_MEMORY = 64


@dataclass
class _Run:
    """The speculative decode in flight."""

    speculation: Speculation
    cancel: threading.Event
    task: asyncio.Task


@dataclass
class _Candidate:
    """A channel's latest finished speculative result, kept until its final takes it or it is
    retired (by the channel's next one, or at shutdown)."""

    result: SpeculativeResult
    used: bool  # shown as a partial


OnSpeculative = Callable[[SpeculativeResult], bool]


class Worker:
    def __init__(
        self,
        load_engine: Callable[[], Engine],
        on_result: Callable[[JobResult], Awaitable[None]],
        queue_size: int = 16,
        on_speculative: OnSpeculative | None = None,
        on_stream: Callable[[Job, str], None] | None = None,
        stream_interval_s: Callable[[], float] = lambda: 1.0,
    ):
        """`on_speculative` is called on the loop with each speculative result of an utterance
        whose final has not been submitted yet, and returns True if it showed it (a partial).
        It must not block: it runs between the lane and the final that may wait for it.
        `on_stream(job, text_so_far)` is called on the loop as a streaming engine's final decode
        produces text, at most once per `stream_interval_s()` seconds (read per job, so a reload
        applies); every call comes before that job's result is delivered."""
        self._load_engine = load_engine
        self._on_result = on_result
        self._on_speculative = on_speculative
        self._on_stream = on_stream
        self._stream_interval_s = stream_interval_s
        self._queue: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=queue_size)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._unfinished: deque[Job] = deque()  # queued or running, oldest first
        self.engine: Engine | None = None
        self.completed = 0
        self.speculation = SpeculationStats()
        self.nonspeech = NonSpeechGuard()  # no invented text (nonspeech.py); counts its drops
        #: the next speculative decode to start, per channel (insertion order: oldest first)
        self._pending: dict[str, Speculation] = {}
        self._running: _Run | None = None
        #: per channel: the latest finished speculative result (one channel's never retires another's)
        self._candidates: dict[str, _Candidate] = {}
        self._ended: deque[str] = deque(maxlen=_ENDED_MEMORY)
        self._final_busy = False
        self._closed = False
        self.waiting: str | None = None  # why start() is waiting (for the engine's server)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` on the inference thread (the only thread that may touch the engine)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def start(
        self, stop: asyncio.Event | None = None, on_wait: Callable[[], None] | None = None
    ) -> Engine | None:
        """Load and warm up the engine on the inference thread.

        With `stop`, a warm-up no server answered is tried again (warmup.py) while `waiting` says
        why and `on_wait()` is told; None (the engine closed) if `stop` is set meanwhile.
        """
        engine = await self.call(self._load_engine)

        def waiting(why: str | None) -> None:
            self.waiting = why
            if why is not None and on_wait is not None:
                on_wait()

        try:
            warm = await warm_up(partial(self.call, engine.warmup), stop, waiting)
        except BaseException:
            await self.call(engine.close)
            raise
        if not warm:
            await self.call(engine.close)
            return None
        self.engine = engine
        return engine

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
        self._ended.append(job.id)  # from now on its speculative results are no partials
        pending = self._pending.get(job.channel)
        if pending is not None and pending.id == job.id:
            del self._pending[job.channel]
        run = self._running
        if run is not None and not any(
            run.speculation.id == j.id and run.speculation.covers(j.utterance, j.language)
            for j in (*self._unfinished, job)
        ):
            run.cancel.set()  # it cannot become any queued final: free the engine for them
        if self._queue.full():
            log.warning(
                "worker: queue full (%d utterances); waiting for the engine", self._queue.qsize()
            )
        await self._queue.put(job)
        self._unfinished.append(job)

    async def close_queue(self) -> None:
        """No more jobs: `run` returns once everything queued is done."""
        self._closed = True
        self._pending.clear()
        await self._queue.put(None)

    # -- the speculative lane -------------------------------------------------------------------

    def speculate(self, speculation: Speculation) -> None:
        """Ask for a speculative decode of an open utterance; it replaces one of its channel not
        yet started (and queues behind other channels' requests)."""
        if self._closed or speculation.id in self._ended:
            return
        self._pending.pop(speculation.channel, None)
        self._pending[speculation.channel] = speculation
        self._kick()

    def cancel_speculation(self, utterance_id: str) -> None:
        """Speech resumed: what was decoded so far cannot be this utterance's final."""
        for channel, pending in list(self._pending.items()):
            if pending.id == utterance_id:
                del self._pending[channel]
        if self._running is not None and self._running.speculation.id == utterance_id:
            self._running.cancel.set()

    def _kick(self) -> None:
        """Start the pending speculative decode if the engine has nothing better to do."""
        if (
            not self._pending
            or self._running is not None
            or self._final_busy
            or not self._queue.empty()
            or self.engine is None
        ):
            return
        speculation = self._pending.pop(next(iter(self._pending)))
        cancel = threading.Event()
        task = asyncio.get_running_loop().create_task(
            self._speculate(speculation, cancel), name=f"speculate-{speculation.id}"
        )
        self._running = _Run(speculation, cancel, task)

    async def _speculate(self, speculation: Speculation, cancel: threading.Event) -> None:
        self.speculation.started += 1
        started = time.time()
        transcript: Transcript | None = None
        try:
            transcript = await self.call(self._transcribe_speculation, speculation, cancel)
        except Cancelled:
            pass
        except DictatedError as exc:  # a known cause (no server answered): no traceback
            log.warning("speculative decode of %s failed: %s", speculation.id, exc)
        except Exception:  # a speculative failure costs nothing: the final decodes anew
            log.warning("speculative decode of %s failed", speculation.id, exc_info=True)
        self._running = None
        if transcript is None or cancel.is_set():  # cancelled, failed, or finished but stale
            self.speculation.wasted += 1
        else:
            result = SpeculativeResult(speculation, transcript, started, time.time())
            self._retire_candidate(speculation.channel)
            self._candidates[speculation.channel] = candidate = _Candidate(result, used=False)
            if self._on_speculative is not None and speculation.id not in self._ended:
                # the candidate keeps the whole text: the final's check has the speech probability
                shown = replace(result, transcript=self.nonspeech.for_partial(transcript))
                try:
                    candidate.used = bool(self._on_speculative(shown))
                except Exception:
                    log.exception("could not deliver the speculative result of %s", speculation.id)
        self._kick()

    def _retire_candidate(self, channel: str) -> None:
        candidate = self._candidates.pop(channel, None)
        if candidate is not None and not candidate.used:
            self.speculation.wasted += 1

    async def _reuse(self, job: Job) -> SpeculativeResult | None:
        """The speculative result that is this job's final, if there is one (see module doc)."""
        run = self._running
        if run is not None:
            if run.speculation.id != job.id or not run.speculation.covers(
                job.utterance, job.language
            ):
                run.cancel.set()
            await asyncio.shield(run.task)  # the engine is one thread: it must be free first
        candidate = self._candidates.get(job.channel)
        if candidate is None or candidate.result.speculation.id != job.id:
            return None
        if not candidate.result.speculation.covers(job.utterance, job.language):
            self._retire_candidate(job.channel)
            return None
        del self._candidates[job.channel]
        self.speculation.reused += 1
        return candidate.result

    def _transcribe_speculation(self, speculation: Speculation, cancel: threading.Event):
        assert self.engine is not None, "worker.start() loads the engine first"
        return self.engine.transcribe(
            int16_to_float32(speculation.pcm), speculation.language, cancel
        )

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
            self._final_busy = True
            try:
                result = await self._final(job)
                await self._on_result(result)
            except Exception:  # a failure to publish one result must not stop all later ones
                log.exception("could not deliver the result of utterance %s", job.id)
            finally:
                self._unfinished.popleft()
                self.completed += 1
                self._final_busy = False
                self._kick()
        if self._running is not None:  # nothing will take it: stop it before the engine closes
            self._running.cancel.set()
            await asyncio.shield(self._running.task)
        for channel in list(self._candidates):
            self._retire_candidate(channel)

    async def _final(self, job: Job) -> JobResult:
        """The job's result: no decode if it held no speech, else a decode (or the speculative
        one it can reuse) whose text the non-speech guard checks."""
        dropped = self.nonspeech.gate(job.utterance, job.id)
        if dropped is not None:
            self._forget(job)
            now = time.time()
            return JobResult(job, Transcript("", job.language), None, now, now, dropped=dropped)
        result = await self._decode(job)
        if result.transcript is None:
            return result
        what = describe(job.id, job.utterance)
        dropped = self.nonspeech.check(result.transcript, job.utterance.speech_prob, what)
        if dropped is None:
            return result
        empty = replace(result.transcript, text="", tokens=())
        return replace(result, transcript=empty, dropped=dropped)

    def _forget(self, job: Job) -> None:
        """No final will take this job's speculative decodes: stop the one running, retire the
        one done (the engine is freed for the next job without waiting here)."""
        run = self._running
        if run is not None and run.speculation.id == job.id:
            run.cancel.set()
        candidate = self._candidates.get(job.channel)
        if candidate is not None and candidate.result.speculation.id == job.id:
            self._retire_candidate(job.channel)

    async def _decode(self, job: Job) -> JobResult:
        reused = await self._reuse(job)
        if reused is not None:
            return JobResult(
                job,
                reused.transcript,
                None,
                reused.engine_started,
                reused.engine_finished,
                speculative=True,
            )
        started = time.time()
        throttle = self._throttle(job)
        try:
            transcript = await self.call(self._transcribe, job, throttle)
            error = None
        except DictatedError as exc:  # a known cause (e.g. no server answered): no traceback
            log.error("engine failed on utterance %s: %s", job.id, exc)
            transcript, error = None, f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # reported as an error event naming the utterance
            log.exception("engine failed on utterance %s", job.id)
            transcript, error = None, f"{type(exc).__name__}: {exc}"
        finally:
            if throttle is not None:
                throttle.close()  # nothing of this job's stream after its result
        return JobResult(job, transcript, error, started, time.time())

    def unfinished(self) -> list[Job]:
        """Jobs queued or running and not yet delivered, oldest first."""
        return list(self._unfinished)

    def _transcribe(self, job: Job, throttle: StreamThrottle | None) -> Transcript:
        engine = self.engine
        assert engine is not None, "worker.start() loads the engine first"
        pcm = int16_to_float32(job.utterance.pcm)
        if throttle is None:
            return engine.transcribe(pcm, job.language)
        # each text is queued on the loop before this decode's own completion, so before its result
        return engine.transcribe(pcm, job.language, on_partial=throttle.offer_threadsafe)

    def _throttle(self, job: Job) -> StreamThrottle | None:
        """The gate for this job's streamed text, if the engine streams and anyone listens."""
        on_stream = self._on_stream
        if on_stream is None or self.engine is None or not self.engine.streams_partials:
            return None
        return StreamThrottle(partial(on_stream, job), self._stream_interval_s())

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
