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
from dataclasses import asdict
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
    TOPIC_ERROR,
    TOPIC_STATUS,
    TOPIC_TRANSCRIPT,
    TOPIC_VAD,
    TranscriptBody,
)
from .segmenter import Segmenter
from .transport.control import CommandError, ControlServer
from .transport.publisher import Publisher
from .worker import Job, JobResult, Worker

log = logging.getLogger(__name__)

HEARTBEAT_S = 30.0
SHUTDOWN_TIMEOUT_S = 120.0  # drain the worker at most this long on a stop signal
STOP_CAPTURE_TIMEOUT_S = 5.0  # a source that does not end when closed is cancelled


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
        self._segmenter = Segmenter(config.segmenter)
        self._clock: StreamClock | None = None
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
            self.journal = Journal(journal_path)
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
            self._set_state("ready", engine=engine.name, source=self._source.description)
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
            self._publish(TOPIC_ERROR, {"message": str(exc), "fatal": True})
            exit_code = 1
        if not pump.done():
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
        stop.cancel()
        await self._segment_flush()
        return exit_code

    async def _pump(self, source: AudioSource) -> None:
        self._clock = StreamClock(source.realtime)
        async for block in source.blocks():
            if self._paused:
                continue
            # a pause may swap segmenter and clock while we wait for the worker: keep this pair
            segmenter, clock = self._segmenter, self._clock
            clock.add(len(block.pcm), block.captured_at)
            for event in segmenter.push(block.pcm):
                await self._on_segment_event(event, clock)

    async def _segment_flush(self) -> None:
        """End the open utterance (end of input, stop, pause) and start afresh."""
        segmenter, clock = self._segmenter, self._clock
        self._segmenter = Segmenter(self.config.segmenter)
        self._clock = StreamClock(clock.realtime) if clock else None
        for event in segmenter.flush():
            await self._on_segment_event(event, clock)

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

    def request_stop(self) -> None:
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

    async def _on_segment_event(self, event: SegmenterEvent, clock: StreamClock) -> None:
        if isinstance(event, SpeechStarted):
            self._publish(TOPIC_VAD, {"event": "speech_start", "time": clock.wall(event.sample)})
        elif isinstance(event, SpeechPaused):
            self._publish(TOPIC_VAD, {"event": "pause", "time": clock.wall(event.sample)})
        elif isinstance(event, UtteranceEnded):
            u = event.utterance
            self._utterances += 1
            now = time.time()
            job = Job(
                id=f"{self.run_id}-{self._utterances}",
                utterance=u,
                language=self.language,
                start_wall=clock.wall(u.start_sample),
                speech_end_wall=min(clock.wall(u.speech_end_sample), now),
                closed_wall=now,
                queued_wall=now,
            )
            self._publish(
                TOPIC_VAD, {"event": "speech_end", "time": job.speech_end_wall, "id": job.id}
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
            audio_s=round(u.duration_s, 3),
            latency_ms=round((now - job.speech_end_wall) * 1000, 1),
            engine=t.engine or self.engine_name,
            truncated=t.truncated,
            reason=u.reason,
            tokens=list(t.tokens),
            timings_ms={k: round(v, 2) for k, v in timings.items()},
        )
        self._publish(TOPIC_TRANSCRIPT, asdict(body))
        log.info("utterance %s (%.1f s, %s): %s", job.id, u.duration_s, u.reason, t.text)

    def _publish_failure(self, job: Job, message: str) -> None:
        """An utterance that got no transcript: an error event naming it, and its audio kept."""
        self._publish(
            TOPIC_ERROR,
            {
                "id": job.id,
                "message": message,
                "audio_path": _save_failed_audio(job),
                "start": job.start_wall,
                "end": job.speech_end_wall,
                "audio_s": job.utterance.duration_s,
            },
        )

    def _publish(self, topic: str, body: dict) -> None:
        self.publisher.publish(topic, body)

    def _set_state(self, state: str, **fields) -> None:
        self.state = state
        if hasattr(self, "publisher"):
            self._publish(TOPIC_STATUS, {"state": self.effective_state, **fields})
        log.info("state: %s", self.effective_state)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            self._publish(
                TOPIC_STATUS,
                {
                    "state": self.effective_state,
                    "heartbeat": True,
                    "lag_s": round(self.worker.lag_s(), 3),
                },
            )

    # -- control commands ------------------------------------------------------------------

    async def _cmd_status(self, request: dict) -> dict:
        return {
            "state": self.effective_state,
            "version": __version__,
            "pid": os.getpid(),
            "engine": getattr(self, "engine_name", None),
            "language": self.language,
            "source": self._source.description if self._source else None,
            "uptime_s": round(time.time() - self.started_at, 1),
            "utterances": self._utterances,
            "pending": self.worker.pending(),
            "lag_s": round(self.worker.lag_s(), 3),
            "seq": self.publisher.seq,
            "endpoints": {"events": self.publisher.endpoints, "control": self.control_endpoint},
            "journal": str(self.journal.path),
            **(self.worker.engine.status_info() if self.worker.engine else {}),
        }

    async def _cmd_pause(self, request: dict) -> dict:
        if not self._paused:
            self._paused = True
            # the open utterance is transcribed, not lost; in a task, because handing it to a
            # busy worker may wait, and the control socket must keep answering meanwhile
            self._background(self._segment_flush())
            self._publish(TOPIC_STATUS, {"state": self.effective_state})
        return {"state": self.effective_state}

    async def _cmd_resume(self, request: dict) -> dict:
        if self._paused:
            self._paused = False
            self._publish(TOPIC_STATUS, {"state": self.effective_state})
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
        self._publish(TOPIC_STATUS, {"state": self.effective_state, "language": self.language})
        return {"language": self.language}

    async def _cmd_history(self, request: dict) -> dict:
        since = request.get("since", 0)
        limit = request.get("limit", MAX_HISTORY)
        if not isinstance(since, int) or isinstance(since, bool) or since < 0:
            raise CommandError("'since' must be a non-negative integer seq")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 0 < limit <= MAX_HISTORY:
            raise CommandError(f"'limit' must be an integer in 1..{MAX_HISTORY}")
        events, more = self.journal.since(since, limit)
        return {
            "events": [{"topic": e.topic, "event": e.body} for e in events],
            "more": more,  # ask again from the last event's seq
            "last_seq": self.publisher.seq,
        }


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
