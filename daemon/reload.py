"""SIGHUP: what a reloaded config changes in a running daemon, and what waits for a restart.

Applied at once: the segmenter and speculation settings (from the next moment nobody is speaking, so the utterance
under way is not cut in two), the language, the journal's rotation. An engine change (name or any
engine option) loads the new engine on the inference thread, between utterances. The audio
sources and speaker names, the sockets and the journal's path stay as they are until the daemon restarts (a log line
says so): changing them live would drop subscribers or move the history under their feet.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from .config import Config
from .engines.base import Engine
from .engines.registry import create_engine
from .errors import DictatedError
from .worker import Worker

log = logging.getLogger(__name__)

#: config sections (attributes of Config) that only a restart applies
RESTART_ONLY = ("audio", "transport", "speakers", "echo")


@dataclass(frozen=True)
class ReloadPlan:
    config: Config  # what runs from now on: the new file, restart-only parts as they are
    engine_changed: bool
    needs_restart: tuple[str, ...]  # what changed but applies at the next start


def plan_reload(running: Config, loaded: Config) -> ReloadPlan:
    """Compare the running config with a freshly loaded one (already validated)."""
    needs_restart = [s for s in RESTART_ONLY if getattr(running, s) != getattr(loaded, s)]
    journal = loaded.journal
    if journal.path != running.journal.path:
        needs_restart.append("journal.path")
        journal = dataclasses.replace(journal, path=running.journal.path)
    engine_changed = (
        running.engine.name != loaded.engine.name or running.engine_options != loaded.engine_options
    )
    config = dataclasses.replace(
        loaded,
        audio=running.audio,
        transport=running.transport,
        speakers=running.speakers,
        journal=journal,
    )
    return ReloadPlan(config, engine_changed, tuple(needs_restart))


async def load_reload(
    running: Config, load: Callable[[], Config], worker: Worker
) -> tuple[ReloadPlan, Engine, str] | None:
    """Load the config again and, if the engine changed, the new engine (between utterances);
    None, logged, if either fails: the running ones are kept."""
    try:
        loaded = load()
        engine = worker.engine
        if engine is None:
            raise DictatedError("the engine is still loading; send SIGHUP again when ready")
        plan = plan_reload(running, loaded)
        if plan.engine_changed:
            engine, language = await worker.reload(
                partial(create_engine, loaded.engine.name, loaded.engine_options),
                loaded.engine.language,
            )
        else:
            language = engine.check_language(loaded.engine.language)
    except (DictatedError, ValueError) as exc:
        log.error("configuration reload refused, keeping the running one: %s", exc)
        return None
    except Exception:  # an engine that fails to load in some unforeseen way
        log.exception("configuration reload refused, keeping the running one")
        return None
    return plan, engine, language


def log_reload(plan: ReloadPlan) -> None:
    for part in plan.needs_restart:
        log.warning("%s changed in the config file: applies when the daemon restarts", part)
    log.info(
        "configuration reloaded from %s%s",
        plan.config.source_file or "defaults (no config file)",
        " (engine reloaded)" if plan.engine_changed else "",
    )
