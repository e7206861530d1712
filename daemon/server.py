"""The daemon's single lifecycle: signals -> startup -> main loop -> shutdown (bounded).

One asyncio loop owns the sockets, the queue and the timing; the worker's inference thread owns the
engine; the audio source owns the device. Signal handlers only set a flag; a second signal forces
exit. With a file or stdin source the daemon exits 0 once every utterance has been published.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path

import zmq
import zmq.asyncio

from . import __version__, paths
from .audio.format import SAMPLE_RATE
from .audio.source import AudioSource, open_source
from .clock import StreamClock
from .config import Config
from .engines.registry import create_engine
from .errors import ConfigError, DictatedError
from .events import SegmenterEvent, SpeechPaused, SpeechStarted, UtteranceEnded
from .journal import Journal
from .protocol import (
    CONTROL_SOCKET,
    EVENTS_SOCKET,
    MAX_HISTORY,
    TOPICS,
    Body,
    ErrorBody,
    StatusBody,
    TranscriptBody,
    VadBody,
)
from .segmenter import Segmenter
from .shutdown import DRAIN_TIMEOUT_S, STOP_CAPTURE_TIMEOUT_S
from .transport.control import CommandError, ControlServer
from .transport.publisher import Publisher
from .worker import Job, JobResult, Worker

log = logging.getLogger(__name__)

HEARTBEAT_S = 30.0
# the drain bounds live with the service managers' stop timers they must fit in (shutdown.py)
SHUTDOWN_TIMEOUT_S = DRAIN_TIMEOUT_S


class Daemon:
    def __init__(self, config: Config, source: AudioSource | None = None):
        self.config = config
        self.language = config.engine.language
        self.state = "starting"
        self.started_at = time.time()
        self.run_id = format(int(self.started_at * 1000) % 0xFFFFFFFF, "x")
        self._source = source
        self._stop = asyncio.Event()
        self._signals = 0
        self._utterances = 0
        self._paused = False
        self._segmenter: Segmenter | None = None  # made at the first block after (re)start
        self._clock: StreamClock | None = None  # the source's timeline, for the whole run
        self._open_id: str | None = None  # id of the utterance under way (from speech start)
        self._errors = 0
        self._tasks: set[asyncio.Task] = set()

    # -- lifecycle -------------------------------------------------------------------------

    async def serve(self) -> int:
        self._install_signal_handlers()
        try:
            self._startup_sockets()
            return await self._main()
        finally:
            await self._shutdown_sockets()

    def _startup_sockets(self) -> None:
        wanted = self.config.transport.socket_dir()
        try:
            socket_dir = paths.ensure_private_dir(wanted)
        except OSError as exc:
            raise ConfigError(
                f"transport.runtime_dir: cannot use {wanted} for sockets: {exc}"
            ) from exc
        self.events_endpoint = paths.ipc_endpoint(socket_dir, EVENTS_SOCKET)
        self.control_endpoint = paths.ipc_endpoint(socket_dir, CONTROL_SOCKET)
        _refuse_if_running(self.control_endpoint)
        journal_path = self.config.journal.resolved()
        try:
            self.journal = Journal(journal_path, self.config.journal.rotation())
        except OSError as exc:
            raise ConfigError(
                f"journal.path: cannot open the journal {journal_path}: {exc}"
            ) from exc
        self.context = zmq.asyncio.Context()
        endpoints = [self.events_endpoint, *self.config.transport.pub]
        self.publisher = Publisher(self.context, endpoints, self.journal)
        handlers = {
            "status": self._cmd_status,
            "pause": self._cmd_pause,
            "resume": self._cmd_resume,
            "language": self._cmd_language,
            "history": self._cmd_history,
        }
        self.control = ControlServer(self.context, self.control_endpoint, handlers)
        log.info(
            "events on %s; control on %s; journal %s",
            ", ".join(endpoints),
            self.control_endpoint,
            self.journal.path,
        )

    async def _main(self) -> int:
        control_task = asyncio.create_task(self.control.serve(), name="control")
        self.worker = Worker(self._load_engine, self._on_result)
        try:
            if self._source is None:
                cfg = self.config.audio
                self._source = open_source(cfg.source, realtime=cfg.realtime, device=cfg.device)
            self._set_state("warming", detail="loading and warming up the speech engine")
            engine = await self.worker.start()
            try:
                self.language = engine.check_language(self.language)
            except ValueError as exc:
                raise ConfigError(f"engine.language: {exc}") from exc
            self.engine_name = engine.name
            self._set_state("ready")
            worker_task = asyncio.create_task(self.worker.run(), name="worker")
            heartbeat = asyncio.create_task(self._heartbeat(), name="heartbeat")
            exit_code = await self._capture_until_done()
            await self._drain(worker_task)
            heartbeat.cancel()
            await self._linger()
            return exit_code
        finally:
            control_task.cancel()
            self._set_state("stopped")
            if self._source is not None:
                await self._source.aclose()
            await self.worker.shutdown()

    async def _capture_until_done(self) -> int:
        """Feed audio to the segmenter until end of input or a stop signal; flush what is open."""
        assert self._source is not None
        pump = asyncio.create_task(self._pump(self._source), name="audio")
        stop = asyncio.create_task(self._stop.wait(), name="stop")
        done, _ = await asyncio.wait({pump, stop}, return_when=asyncio.FIRST_COMPLETED)
        if pump not in done:
            # Stop at the source rather than cancelling the pump, which may be handing a finished
            # utterance to a busy worker: that one must still be transcribed.
            await self._source.aclose()
            try:
                await asyncio.wait_for(asyncio.shield(pump), STOP_CAPTURE_TIMEOUT_S)
            except TimeoutError:
                log.warning("audio capture did not stop within %.0f s", STOP_CAPTURE_TIMEOUT_S)
        exit_code = 0
        if pump in done and pump.exception() is not None:
            exc = pump.exception()
            if not isinstance(exc, DictatedError):
                raise exc
            log.error("%s", exc)
            self._publish(ErrorBody(message=str(exc), fatal=True))
            exit_code = 1
        if not pump.done():
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
        stop.cancel()
        await self._on_segment_events(self._segment_flush())
        return exit_code

    async def _pump(self, source: AudioSource) -> None:
        self._clock = clock = StreamClock(source.realtime)
        async for block in source.blocks():
            position = clock.samples
            clock.add(len(block.pcm), block.captured_at)  # paused audio too: it is source time
            if self._paused:
                continue
            if self._segmenter is None:
                self._segmenter = Segmenter(self.config.segmenter, start_sample=position)
            await self._on_segment_events(self._identify(self._segmenter.push(block.pcm)))

    def _segment_flush(self) -> list[tuple[SegmenterEvent, str]]:
        """End the open utterance (end of input, stop, pause); the next block starts afresh.

        Synchronous, so a pause ends the utterance exactly where it was asked to.
        """
        segmenter, self._segmenter = self._segmenter, None
        return self._identify(segmenter.flush()) if segmenter is not None else []

    def _identify(self, events: list[SegmenterEvent]) -> list[tuple[SegmenterEvent, str]]:
        """Each event with its utterance's id, assigned at speech start (in stream order)."""
        tagged = []
        for event in events:
            if isinstance(event, SpeechStarted) or self._open_id is None:
                self._utterances += 1
                self._open_id = f"{self.run_id}-{self._utterances}"
            tagged.append((event, self._open_id))
            if isinstance(event, UtteranceEnded):
                self._open_id = None
        return tagged

    async def _drain(self, worker_task: asyncio.Task) -> None:
        """Let the worker finish every queued utterance; report any it cannot finish in time."""
        try:
            async with asyncio.timeout(SHUTDOWN_TIMEOUT_S):
                await self.worker.close_queue()
                await worker_task
        except TimeoutError:
            worker_task.cancel()
            for job in self.worker.unfinished():
                self._publish_failure(
                    job, f"not transcribed within {SHUTDOWN_TIMEOUT_S:.0f} s of shutdown"
                )

    async def _linger(self) -> None:
        """Let subscribers receive the last events before the sockets close."""
        if self.config.transport.linger_s:
            await asyncio.sleep(self.config.transport.linger_s)

    async def _shutdown_sockets(self) -> None:
        """Close whatever start-up managed to open (it may have failed half way)."""
        for name in ("control", "publisher", "journal"):
            if (part := getattr(self, name, None)) is not None:
                part.close()
        if (context := getattr(self, "context", None)) is not None:
            context.term()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.handle_signal, sig)
            except (NotImplementedError, RuntimeError):  # not the main thread (tests)
                return

    def handle_signal(self, sig: int) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second signal: exiting now")
            os._exit(130)
        log.info(
            "received %s: finishing the open utterance, then stopping", signal.Signals(sig).name
        )
        self._stop.set()

    @property
    def effective_state(self) -> str:
        """What a client should show: `paused` while paused and otherwise ready."""
        return "paused" if self._paused and self.state == "ready" else self.state

    def _background(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)  # keep a reference until done (asyncio holds only weak ones)
        task.add_done_callback(self._tasks.discard)

    @property
    def audio_driver_stuck(self) -> bool:
        return self._source is not None and self._source.driver_stuck

    # -- the data flow ---------------------------------------------------------------------

    def _load_engine(self):
        return create_engine(self.config.engine.name, self.config.engine_options)

    async def _on_segment_events(self, events: list[tuple[SegmenterEvent, str]]) -> None:
        for event, utterance_id in events:
            await self._on_segment_event(event, utterance_id)

    async def _on_segment_event(self, event: SegmenterEvent, utterance_id: str) -> None:
        clock = self._clock
        assert clock is not None, "events come from audio the clock has seen"
        if isinstance(event, SpeechStarted | SpeechPaused):
            sample = event.onset_sample if isinstance(event, SpeechStarted) else event.sample
            kind = "speech_start" if isinstance(event, SpeechStarted) else "pause"
            self._publish(VadBody(kind, utterance_id, clock.wall(sample), _stream_s(sample)))
        elif isinstance(event, UtteranceEnded):
            u = event.utterance
            now = time.time()
            job = Job(
                id=utterance_id,
                utterance=u,
                language=self.language,
                start_wall=clock.wall(u.start_sample),
                speech_start_wall=min(clock.wall(u.onset_sample), now),
                speech_end_wall=min(clock.wall(u.speech_end_sample), now),
                closed_wall=now,
                queued_wall=now,
            )
            self._publish(
                VadBody("speech_end", job.id, job.speech_end_wall, _stream_s(u.speech_end_sample))
            )
            await self.worker.submit(job)

    async def _on_result(self, result: JobResult) -> None:
        job, u = result.job, result.job.utterance
        if result.transcript is None:
            self._publish_failure(job, f"transcription failed: {result.error}")
            return
        t = result.transcript
        now = time.time()
        timings = {
            "hangover": (job.closed_wall - job.speech_end_wall) * 1000,
            "queue": (result.engine_started - job.queued_wall) * 1000,
            "engine": (result.engine_finished - result.engine_started) * 1000,
            "publish": (now - result.engine_finished) * 1000,
            **{f"engine_{k}": v for k, v in t.timings_ms.items()},
        }
        body = TranscriptBody(
            id=job.id,
            text=t.text,
            language=t.language,
            start=job.start_wall,
            end=job.speech_end_wall,
            speech_start=job.speech_start_wall,
            stream_start=_stream_s(u.onset_sample),
            stream_end=_stream_s(u.speech_end_sample),
            audio_s=round(u.duration_s, 3),
            latency_ms=round((now - job.speech_end_wall) * 1000, 1),
            engine=self.engine_name,
            truncated=t.truncated,
            reason=u.reason,
            tokens=list(t.tokens),
            timings_ms={k: round(v, 2) for k, v in timings.items()},
        )
        self._publish(body)
        log.info("utterance %s (%.1f s, %s): %s", job.id, u.duration_s, u.reason, t.text)

    def _publish_failure(self, job: Job, message: str) -> None:
        """An utterance that got no transcript: an error event naming it, and its audio kept."""
        u = job.utterance
        self._errors += 1
        self._publish(
            ErrorBody(
                message=message,
                fatal=False,
                id=job.id,
                start=job.start_wall,
                end=job.speech_end_wall,
                stream_start=_stream_s(u.onset_sample),
                stream_end=_stream_s(u.speech_end_sample),
                audio_s=round(u.duration_s, 3),
                audio_path=_save_failed_audio(job),
            )
        )

    def _publish(self, body: Body) -> None:
        self.publisher.publish(body)

    def _status(self, heartbeat: bool = False, detail: str | None = None) -> StatusBody:
        """The one place a status body is made: events and the `status` reply say the same."""
        worker = getattr(self, "worker", None)
        return StatusBody(
            state=self.effective_state,
            heartbeat=heartbeat,
            detail=detail,
            engine=getattr(self, "engine_name", None),
            language=self.language,
            source=self._source.description if self._source else None,
            lag_s=round(worker.lag_s(), 3) if worker else None,
            uptime_s=round(time.time() - self.started_at, 1),
            utterances=self._utterances,
            errors=self._errors,
        )

    def _set_state(self, state: str, detail: str | None = None) -> None:
        self.state = state
        if hasattr(self, "publisher"):
            self._publish(self._status(detail=detail))
        log.info("state: %s", self.effective_state)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            self._publish(self._status(heartbeat=True))

    # -- control commands ------------------------------------------------------------------

    async def _cmd_status(self, request: dict) -> dict:
        status = self._status().fields()
        del status["heartbeat"]
        return {
            **status,
            "engine": status.get("engine"),
            "source": status.get("source"),
            "version": __version__,
            "pid": os.getpid(),
            "pending": self.worker.pending(),
            "seq": self.publisher.seq,
            "endpoints": {"events": self.publisher.endpoints, "control": self.control_endpoint},
            "journal": str(self.journal.path),
        }

    async def _cmd_pause(self, request: dict) -> dict:
        if not self._paused:
            self._paused = True
            # the open utterance is transcribed, not lost; in a task, because handing it to a
            # busy worker may wait, and the control socket must keep answering meanwhile
            self._background(self._on_segment_events(self._segment_flush()))
            self._publish(self._status())
        return {"state": self.effective_state}

    async def _cmd_resume(self, request: dict) -> dict:
        if self._paused:
            self._paused = False
            self._publish(self._status())
        return {"state": self.effective_state}

    async def _cmd_language(self, request: dict) -> dict:
        language = request.get("language")
        if language is None:
            return {"language": self.language}
        if not isinstance(language, str):
            raise CommandError("'language' must be a string such as \"en\"")
        engine = self.worker.engine
        if engine is None:
            raise CommandError("the engine is still loading; try again when status is ready")
        try:
            self.language = engine.check_language(language)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self._publish(self._status())
        return {"language": self.language}

    async def _cmd_history(self, request: dict) -> dict:
        since = request.get("since", 0)
        limit = request.get("limit", MAX_HISTORY)
        if not isinstance(since, int) or isinstance(since, bool) or since < 0:
            raise CommandError("'since' must be a non-negative integer seq")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 0 < limit <= MAX_HISTORY:
            raise CommandError(f"'limit' must be an integer in 1..{MAX_HISTORY}")
        topics = request.get("topics")
        if topics is not None and (
            not isinstance(topics, list) or not all(t in TOPICS for t in topics)
        ):
            raise CommandError(
                f"'topics' must be a list of topics ({', '.join(TOPICS)}), e.g. [\"transcript\"]"
            )
        events, more = self.journal.since(since, limit, topics)
        return {
            "events": [{"topic": e.topic, "event": e.body} for e in events],
            "more": more,  # ask again from the last event's seq
            "last_seq": self.publisher.seq,
        }


def _stream_s(sample: int) -> float:
    """A source position in seconds from its first sample (ms precision)."""
    return round(sample / SAMPLE_RATE, 3)


def _save_failed_audio(job: Job) -> str | None:
    """Keep the audio of an utterance the engine failed on, so the user can retry it."""
    import soundfile

    path = paths.data_dir() / "failed" / f"{job.id}.wav"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(str(path), job.utterance.pcm, SAMPLE_RATE, subtype="PCM_16")
    except (OSError, RuntimeError) as exc:  # soundfile reports unwritable paths as RuntimeError
        log.error("could not save failed utterance audio %s: %s", path, exc)
        return None
    return str(path)


def _refuse_if_running(control_endpoint: str) -> None:
    """Binding an ipc path steals it from a live daemon; ask first, and remove a stale socket."""
    from .clients.control import ControlClient, DaemonUnavailable

    path = Path(control_endpoint.removeprefix("ipc://"))
    if not path.exists():
        return
    try:
        status = ControlClient(control_endpoint, timeout_s=0.5).request("status")
    except DaemonUnavailable:
        return  # stale socket from a crashed daemon; bind replaces it
    raise DictatedError(
        f"a dictated daemon is already running (pid {status.get('pid')}, control {control_endpoint}); "
        "stop it first (launchctl/systemctl, or kill the pid), or set transport.runtime_dir for a second one"
    )
