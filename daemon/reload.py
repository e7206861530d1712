"""SIGHUP: what a reloaded config changes in a running daemon, and what waits for a restart.

Applied at once: the segmenter and speculation settings (from the next moment nobody is speaking, so the utterance
under way is not cut in two), the language, the journal's rotation. An engine change (name or any
engine option) loads the new engine on the inference thread, between utterances. The audio
source, the sockets and the journal's path stay as they are until the daemon restarts (a log line
says so): changing them live would drop subscribers or move the history under their feet.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .config import Config

#: config sections (attributes of Config) that only a restart applies
RESTART_ONLY = ("audio", "transport")


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
        loaded, audio=running.audio, transport=running.transport, journal=journal
    )
    return ReloadPlan(config, engine_changed, tuple(needs_restart))
