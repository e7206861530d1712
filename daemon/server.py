"""The daemon's single lifecycle: signals -> startup -> main loop -> shutdown (bounded).

One asyncio loop owns the sockets, the queue and the timing; the worker's inference thread owns the
engine; the audio source owns the device. Signal handlers only set a flag; a second signal forces
exit. With a file or stdin source the daemon exits 0 once every utterance has been published.

The parts it runs: `capture.py` (source, clock, segmenter), `worker.py` (the engine's thread),
`translate.py` (utterance -> job, result -> event), `transport/` (PUB socket, journal, control
socket) and `commands.py` (what the control commands do).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import zmq
import zmq.asyncio

from . import paths
from .audio.format import SAMPLE_RATE
from .audio.open_source import open_source
from .audio.source import AudioSource
from .capture import Capture, Heard
from .commands import Commands
from .config import Config
from .engines.base import Engine
from .engines.registry import create_engine
from .errors import ConfigError, DictatedError
from .events import SpeechPaused, SpeechResumed, SpeechStarted, UtteranceEnded
from .journal import Journal
from .private_files import write_private_wav
from .protocol import CONTROL_SOCKET, EVENTS_SOCKET, Body, ErrorBody, State, StatusBody
from .reload import plan_reload
from .shutdown import DRAIN_TIMEOUT_S
from .speculation import Speculator
from .translate import (
    failure_body,
    make_job,
    speech_end_body,
    streamed_partial_body,
    transcript_body,
    vad_body,
)
from .transport.control import ControlServer
from .transport.publisher import Publisher
from .worker import Job, JobResult, SpeculativeResult, Worker

log = logging.getLogger(__name__)

HEARTBEAT_S = 30.0
# the drain bound lives with the service managers' stop timers it must fit in (shutdown.py)
SHUTDOWN_TIMEOUT_S = DRAIN_TIMEOUT_S

EngineFactory = Callable[[], Engine]
ConfigLoader = Callable[[], Config]


class Daemon:
    def __init__(
        self,
        config: Config,
        source: AudioSource | None = None,
        engine_factory: EngineFactory | None = None,
        reload_config: ConfigLoader | None = None,
    ):
        """`source` and `engine_factory` default to what the config names (tests pass their own).
        `reload_config` reads the config again (the CLI's flags on top) when SIGHUP arrives."""
        self.config = config
        self.config_loaded_at = time.time()
        self._reload_config = reload_config
        self._reloading = asyncio.Lock()
        self.language = config.engine.language
        self.state = State.STARTING
        self.started_at = time.time()
        self.run_id = format(int(self.started_at * 1000) % 0xFFFFFFFF, "x")
        self.engine_name: str | None = None
        self.model: str | None = None  # what the engine loaded, for status
        self._source = source
        self._engine_factory = engine_factory or partial(
            create_engine, config.engine.name, config.engine_options
        )
        self._stop = asyncio.Event()
        self._signals = 0
        self._ids = 0  # utterance ids handed out (at speech start)
        self._utterances = 0  # utterances finished and handed to the engine
        self._errors = 0  # utterances that got an error instead of a transcript
        self._tasks: set[asyncio.Task] = set()
        self.worker = Worker(
            self._engine_factory,
            self._on_result,
            on_speculative=self._on_speculative,
            on_stream=self._on_stream,
            stream_interval_s=lambda: self.config.speculation.partial_interval_ms / 1000,
        )
        self.capture: Capture | None = None  # once the source is open
        #: why the audio source ended early, if it did: the CLI turns it into the exit code
        self.failure: DictatedError | None = None
        self.speculator: Speculator | None = None  # once the engine is loaded
        # start-up opens these in order; shutdown closes whatever it got to
        self.events_endpoint: str | None = None
        self.control_endpoint: str | None = None
        self.journal: Journal | None = None
        self.context: zmq.asyncio.Context | None = None
        self.publisher: Publisher | None = None
        self.control: ControlServer | None = None

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
        commands = Commands(self).handlers()
        self.control = ControlServer(self.context, self.control_endpoint, commands)
        log.info(
            "events on %s; control on %s; journal %s",
            ", ".join(endpoints),
            self.control_endpoint,
            self.journal.path,
        )

    async def _main(self) -> int:
        assert self.control is not None, "sockets first"
        control_task = asyncio.create_task(self.control.serve(), name="control")
        try:
            if self._source is None:
                cfg = self.config.audio
                self._source = open_source(
                    cfg.source,
                    realtime=cfg.realtime,
                    device=cfg.device,
                    idle_block_ms=cfg.idle_block_ms,
                )
            self._source.on_device_state = self._on_device_state
            self.capture = Capture(
                self._source,
                self.config.segmenter,
                self._new_id,
                self._on_heard,
                after_block=self._after_block,
            )
            self._set_state(State.WARMING, detail="loading and warming up the speech engine")
            engine = await self.worker.start(self._stop, on_wait=self._publish_status)
            if engine is None:  # stopped while waiting for the engine's server
                return 0
            try:
                self.language = engine.check_language(self.language)
            except ValueError as exc:
                raise ConfigError(f"engine.language: {exc}") from exc
            self.engine_name, self.model = engine.name, engine.description
            self.speculator = Speculator(
                self.config.speculation,
                engine,
                self.worker,
                open_audio=self.capture.open_audio,
                end_early=self.capture.end_early,
                publish=self._publish,
                language=lambda: self.language,
            )
            log.info("%s", self.speculator.describe())
            self._set_state(State.PAUSED if self.capture.paused else State.READY)
            worker_task = asyncio.create_task(self.worker.run(), name="worker")
            heartbeat = asyncio.create_task(self._heartbeat(), name="heartbeat")
            self.failure = failure = await self.capture.run(self._stop)
            if failure is not None:
                log.error("%s", failure)
                self._publish(ErrorBody(message=str(failure), fatal=True))
            await self._drain(worker_task)
            heartbeat.cancel()
            await self._linger()
            return 0 if failure is None else 1
        finally:
            control_task.cancel()
            self._set_state(State.STOPPED)
            if self._source is not None:
                await self._source.aclose()
            await self.worker.shutdown()

    async def _drain(self, worker_task: asyncio.Task) -> None:
        """Let the worker finish every queued utterance; report any it cannot finish in time."""
        try:
            async with asyncio.timeout(SHUTDOWN_TIMEOUT_S):
                await self.worker.close_queue()
                await worker_task
        except TimeoutError:
            worker_task.cancel()
            for job in self.worker.unfinished():
                await self._publish_failure(
                    job, f"not transcribed within {SHUTDOWN_TIMEOUT_S:.0f} s of shutdown"
                )

    async def _linger(self) -> None:
        """Let subscribers receive the last events before the sockets close."""
        if self.config.transport.linger_s:
            await asyncio.sleep(self.config.transport.linger_s)

    async def _shutdown_sockets(self) -> None:
        """Close whatever start-up managed to open (it may have failed half way)."""
        if self.control is not None:
            self.control.close()
        if self.publisher is not None:
            await self.publisher.aclose()  # sends what is queued; closes the journal
        elif self.journal is not None:
            self.journal.close()
        if self.context is not None:
            self.context.term()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.handle_signal, sig)
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests)
            return

    def _on_sighup(self) -> None:
        log.info("received SIGHUP: reloading the configuration")
        task = asyncio.create_task(self.reload(), name="reload")
        self._tasks.add(task)  # keep a reference until done (asyncio holds only weak ones)
        task.add_done_callback(self._tasks.discard)

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
    def audio_driver_stuck(self) -> bool:
        return self._source is not None and self._source.driver_stuck

    # -- state, as the control commands change it ------------------------------------------

    async def pause(self) -> None:
        """Ignore audio until resumed; the utterance under way is transcribed, not lost, and a
        microphone is released (its stream closed, so the OS indicator goes off)."""
        if self.capture is None or self.capture.paused:
            return
        await self.capture.pause()
        if self.state is State.READY:
            self._set_state(State.PAUSED)

    async def resume(self) -> None:
        if self.capture is not None and self.capture.paused:
            await self.capture.resume()
            if self.state is State.PAUSED:
                self._set_state(State.READY)

    async def reload(self) -> bool:
        """Read the config again and apply it (reload.py says what applies when); a config that
        does not load, or an engine that does not, is refused and the running one kept."""
        if self._reload_config is None:
            log.warning("no config to reload: this daemon was not started from the command line")
            return False
        async with self._reloading:
            try:
                loaded = self._reload_config()
                engine = self.worker.engine
                if engine is None:
                    raise DictatedError("the engine is still loading; send SIGHUP again when ready")
                plan = plan_reload(self.config, loaded)
                if plan.engine_changed:
                    new = loaded
                    engine, language = await self.worker.reload(
                        partial(create_engine, new.engine.name, new.engine_options),
                        new.engine.language,
                    )
                else:
                    language = engine.check_language(loaded.engine.language)
            except (DictatedError, ValueError) as exc:
                log.error("configuration reload refused, keeping the running one: %s", exc)
                return False
            except Exception:  # an engine that fails to load in some unforeseen way
                log.exception("configuration reload refused, keeping the running one")
                return False
            self.config, self.language = plan.config, language
            self.engine_name, self.model = engine.name, engine.description
            self.config_loaded_at = time.time()
            assert self.capture is not None and self.journal is not None
            self.capture.set_options(plan.config.segmenter)
            if self.speculator is not None:
                self.speculator.configure(plan.config.speculation, engine)
            self.journal.rotation = plan.config.journal.rotation()
            for part in plan.needs_restart:
                log.warning("%s changed in the config file: applies when the daemon restarts", part)
            log.info(
                "configuration reloaded from %s%s",
                plan.config.source_file or "defaults (no config file)",
                " (engine reloaded)" if plan.engine_changed else "",
            )
            self._publish(self.status_body(detail="configuration reloaded"))
            return True

    def set_language(self, language: str) -> None:
        """Switch the language of the utterances that end from now on (checked by the caller)."""
        self.language = language
        self._publish(self.status_body())

    def status_body(self, heartbeat: bool = False, detail: str | None = None) -> StatusBody:
        """The one place a status body is made: events and the `status` reply say the same."""
        source = self._source
        return StatusBody(
            state=self.state,
            heartbeat=heartbeat,
            detail=detail or self.worker.waiting,
            engine=self.engine_name,
            model=self.model,
            language=self.language,
            source=source.description if source else None,
            device=source.device if source else None,
            device_state=source.device_state if source else None,
            overflows=source.overflows if source and source.device else None,
            lag_s=round(self.worker.lag_s(), 3),
            uptime_s=round(time.time() - self.started_at, 1),
            utterances=self._utterances,
            errors=self._errors,
            speculative=self.worker.speculation.started,
            speculative_wasted=self.worker.speculation.wasted,
        )

    def _publish_status(self) -> None:
        self._publish(self.status_body())

    def _set_state(self, state: State, detail: str | None = None) -> None:
        self.state = state
        self._publish(self.status_body(detail=detail))
        log.info("state: %s", state)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            self._publish(self.status_body(heartbeat=True))

    # -- the data flow ---------------------------------------------------------------------

    def _on_device_state(self, state: str, detail: str | None) -> None:
        """The source's device went away, came back, or was released by a pause."""
        if state == "lost" and self.capture is not None:
            self.capture.end_utterance()  # what was said before the loss is transcribed now
        log.info("audio device %s%s", state, f": {detail}" if detail else "")
        if self.publisher is not None:
            self._publish(self.status_body(detail=detail))

    def _new_id(self) -> str:
        self._ids += 1
        return f"{self.run_id}-{self._ids}"

    async def _on_heard(self, heard: list[Heard]) -> None:
        assert self.capture is not None
        clock = self.capture.clock
        speculator = self.speculator
        for item in heard:
            event = item.event
            if isinstance(event, SpeechResumed):  # no vad event: only speculation cares
                if speculator is not None:
                    speculator.resumed(item.id)
                continue
            if not isinstance(event, UtteranceEnded):
                self._publish(vad_body(item, clock))
                if speculator is None:
                    continue
                if isinstance(event, SpeechStarted):
                    speculator.started(item.id, event.sample, event.onset_sample)
                elif isinstance(event, SpeechPaused):
                    speculator.paused(item.id)
                continue
            if speculator is not None:
                speculator.ended(item.id)
            job = make_job(event.utterance, item.id, self.language, clock, time.time())
            self._utterances += 1
            self._publish(speech_end_body(job))
            await self.worker.submit(job)

    def _after_block(self, stream_samples: int) -> None:
        if self.speculator is not None:
            self.speculator.audio(stream_samples)

    def _on_speculative(self, result: SpeculativeResult) -> bool:
        return self.speculator.on_result(result) if self.speculator is not None else False

    def _on_stream(self, job: Job, text: str) -> None:
        """Text streamed by the final decode so far: a partial, unless partials are off."""
        if text.strip() and self.config.speculation.partials != "off":
            self._publish(streamed_partial_body(job, text.strip()))

    async def _on_result(self, result: JobResult) -> None:
        if result.transcript is None:
            await self._publish_failure(result.job, f"transcription failed: {result.error}")
            return
        assert self.engine_name is not None
        body = transcript_body(result, self.engine_name, time.time())
        self._publish(body)
        u = result.job.utterance
        # the text only at DEBUG: a log (journald, ~/Library/Logs) is read more widely than the journal
        log.info(
            "utterance %s (%.1f s, %s): %d chars", body.id, u.duration_s, u.reason, len(body.text)
        )
        log.debug("utterance %s: %s", body.id, body.text)

    async def _publish_failure(self, job: Job, message: str) -> None:
        """An utterance that got no transcript: an error event naming it, and its audio kept."""
        self._errors += 1
        assert self.journal is not None, "the journal is opened before anything is transcribed"
        where = self.journal.audio_dir  # beside the journal, wherever it is configured
        audio_path = await asyncio.to_thread(_save_failed_audio, job, where)  # fsync: off the loop
        self._publish(failure_body(job, message, audio_path))

    def _publish(self, body: Body) -> None:
        assert self.publisher is not None, "sockets are opened before anything is published"
        self.publisher.publish(body)


def _save_failed_audio(job: Job, directory: Path) -> str | None:
    """Keep the audio of an utterance the engine failed on, so the user can retry it: private,
    and on disk before the error event that names it is published."""
    path = directory / f"{job.id}.wav"
    try:
        write_private_wav(path, job.utterance.pcm, SAMPLE_RATE)
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
