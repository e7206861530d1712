"""The daemon's single lifecycle: signals -> startup -> main loop -> shutdown (bounded).

uvicorn's `Server` is the model: this class only starts things, runs them and stops them. One
asyncio loop owns the sockets, the queue and the timing; the worker's inference thread owns the
engine; each channel's source owns its device. Signal handlers only set a flag; a second signal
forces exit. With file or stdin sources the daemon exits 0 once every channel reached its end
and every utterance has been published.

The parts it runs: `channel.py` (per source: clock, segmenter, speculator, ids), `router.py`
(what channels hear -> events and jobs; results -> annotators -> events), `worker.py` (the
engine's thread), `transport/` (PUB socket, journal, control socket), `commands.py`, `switches.py`.
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

from .annotators import Annotators
from .audio.source import AudioSource
from .channel import Channel, channels_status, open_channels, run_channels
from .commands import Commands
from .config import Config
from .control_state import ControlState
from .engines.base import Engine
from .engines.registry import create_engine
from .errors import ConfigError, DictatedError
from .protocol import Body, ErrorBody, State, StatusBody
from .reload import load_reload, log_reload
from .router import Router, stages_for
from .shutdown import DRAIN_TIMEOUT_S
from .sockets import Sockets
from .switches import Switches
from .worker import Worker

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
        """`source` (tests) replaces the first channel's; `engine_factory` defaults to what the
        config names. `reload_config` reads the config again (CLI flags on top) on SIGHUP."""
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
        self._test_source = source
        self._engine_factory = engine_factory or partial(
            create_engine, config.engine.name, config.engine_options
        )
        self._stop = asyncio.Event()
        self._signals = 0
        self._tasks: set[asyncio.Task] = set()
        self.channels: list[Channel] = []  # once the sources are open
        #: why an audio source ended early, if one did: the CLI turns it into the exit code
        self.failure: DictatedError | None = None
        self.sockets = Sockets()  # opened by serve(), closed whatever it got to
        #: the mode and the typing switch; pause/resume, toggle and the key (switches.py)
        self.control = ControlState(config.control, on_change=self._publish_status)
        self.switches = Switches(
            self.control, lambda: self.channels, self._publish_status, self._listening_changed
        )
        # the worker hands results to the router, which needs the worker: bound late
        self.worker = Worker(
            self._engine_factory,
            lambda result: self.router.on_result(result),
            on_speculative=lambda result: self.router.on_speculative(result),
            on_stream=lambda job, text: self.router.on_stream(job, text),
            stream_interval_s=lambda: self.config.speculation.partial_interval_ms / 1000,
        )
        self.router = Router(
            self.worker,
            self._publish,
            Annotators(stages_for(config, self.control)),
            language=lambda: self.language,
            engine_name=lambda: self.engine_name,
            partials=lambda: self.config.speculation.partials != "off",
            audio_dir=self._audio_dir,
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def serve(self) -> int:
        self._install_signal_handlers()
        try:
            self.sockets.open(self.config, Commands(self).handlers())
            return await self._main()
        finally:
            await self.sockets.aclose()

    async def _main(self) -> int:
        assert self.sockets.control is not None, "sockets first"
        control_task = asyncio.create_task(self.sockets.control.serve(), name="control")
        try:
            self.channels = await open_channels(
                self.config,
                self.run_id,
                self.router.heard,
                self._on_device_state,
                first_source=self._test_source,
                mode=lambda: self.control.mode,
            )
            self.router.channels = {c.label: c for c in self.channels}
            self._set_state(State.WARMING, detail="loading and warming up the speech engine")
            engine = await self.worker.start(self._stop, on_wait=self._publish_status)
            if engine is None:  # stopped while waiting for the engine's server
                return 0
            try:
                self.language = engine.check_language(self.language)
            except ValueError as exc:
                raise ConfigError(f"engine.language: {exc}") from exc
            self.engine_name, self.model = engine.name, engine.description
            for channel in self.channels:
                channel.speculate(
                    self.config.speculation, engine, self.worker, self.router.publish_partial,
                    lambda: self.language,
                )  # fmt: skip
            log.info("%s", self.channels[0].speculator.describe())  # type: ignore[union-attr]
            self._set_state(State.PAUSED if self.switches.all_paused() else State.READY)
            worker_task = asyncio.create_task(self.worker.run(), name="worker")
            heartbeat = asyncio.create_task(self._heartbeat(), name="heartbeat")
            self.failure = failure = await run_channels(self.channels, self._stop, self._on_failure)
            await self._drain(worker_task)
            heartbeat.cancel()
            await self._linger()
            return 0 if failure is None else 1
        finally:
            control_task.cancel()
            self._set_state(State.STOPPED)
            for channel in self.channels:
                await channel.source.aclose()
            await self.worker.shutdown()

    def _on_failure(self, channel: Channel, failure: DictatedError) -> None:
        """A channel's source failed: say so, and stop the others (a restart may help)."""
        log.error("channel %s: %s", channel.label, failure)
        self._publish(ErrorBody(message=str(failure), fatal=True, channel=channel.label))
        self._stop.set()

    async def _drain(self, worker_task: asyncio.Task) -> None:
        """Let the worker finish every queued utterance; report any it cannot finish in time.
        Then the annotators let go of what they hold: nothing heard is lost."""
        try:
            async with asyncio.timeout(SHUTDOWN_TIMEOUT_S):
                await self.worker.close_queue()
                await worker_task
        except TimeoutError:
            worker_task.cancel()
            for job in self.worker.unfinished():
                await self.router.publish_failure(
                    job, f"not transcribed within {SHUTDOWN_TIMEOUT_S:.0f} s of shutdown"
                )
        self.router.flush()

    async def _linger(self) -> None:
        """Let subscribers receive the last events before the sockets close."""
        if self.config.transport.linger_s:
            await asyncio.sleep(self.config.transport.linger_s)

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
        return any(c.source.driver_stuck for c in self.channels)

    # -- state, as the control commands change it ------------------------------------------

    def _listening_changed(self, listening: bool) -> bool:
        """Every channel paused, or one resumed: the state says it (and publishes it)."""
        if self.state is (State.PAUSED if listening else State.READY):
            self._set_state(State.READY if listening else State.PAUSED)
            return True
        return False

    async def reload(self) -> bool:
        """Read the config again and apply it (reload.py says what applies when); a config that
        does not load, or an engine that does not, is refused and the running one kept."""
        if self._reload_config is None:
            log.warning("no config to reload: this daemon was not started from the command line")
            return False
        async with self._reloading:
            loaded = await load_reload(self.config, self._reload_config, self.worker)
            if loaded is None:
                return False
            plan, engine, language = loaded
            self.config, self.language = plan.config, language
            self.engine_name, self.model = engine.name, engine.description
            self.config_loaded_at = time.time()
            assert self.sockets.journal is not None
            self.control.configure(plan.config.control)
            for channel in self.channels:
                channel.capture.set_options(plan.config.segmenter)
                channel.capture.mode_changed()
                if channel.speculator is not None:
                    channel.speculator.configure(plan.config.speculation, engine)
            self.sockets.journal.rotation = plan.config.journal.rotation()
            log_reload(plan)
            self._publish(self.status_body(detail="configuration reloaded"))
            return True

    def set_language(self, language: str) -> None:
        """Switch the language of the utterances that end from now on (checked by the caller)."""
        self.language = language
        self._publish(self.status_body())

    def status_body(self, heartbeat: bool = False, detail: str | None = None) -> StatusBody:
        """The one place a status body is made: events and the `status` reply say the same.
        The top-level source fields describe the first channel; the counters are totals."""
        return StatusBody(
            state=self.state,
            heartbeat=heartbeat,
            detail=detail or self.worker.waiting,
            engine=self.engine_name,
            model=self.model,
            language=self.language,
            lag_s=round(self.worker.lag_s(), 3),
            uptime_s=round(time.time() - self.started_at, 1),
            speculative=self.worker.speculation.started,
            speculative_wasted=self.worker.speculation.wasted,
            dropped_nonspeech=self.worker.nonspeech.stats.skipped,
            dropped_hallucinations=self.worker.nonspeech.stats.dropped,
            **channels_status(self.channels),
            **self.switches.fields(),
        )

    def _publish_status(self) -> None:
        if self.sockets.publisher is not None:  # nothing to tell before the sockets open
            self._publish(self.status_body())

    def _set_state(self, state: State, detail: str | None = None) -> None:
        self.state = state
        self._publish(self.status_body(detail=detail))
        log.info("state: %s", state)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            self._publish(self.status_body(heartbeat=True))

    # -- what the parts tell the lifecycle -------------------------------------------------

    def _on_device_state(self, channel: Channel, state: str, detail: str | None) -> None:
        if self.sockets.publisher is not None:
            self._publish(self.status_body(detail=detail))

    def _audio_dir(self) -> Path:
        assert self.sockets.journal is not None, "the journal opens before anything is heard"
        return self.sockets.journal.audio_dir  # beside the journal, wherever it is configured

    def _publish(self, body: Body) -> None:
        assert self.sockets.publisher is not None, "sockets open before anything is published"
        self.sockets.publisher.publish(body)
