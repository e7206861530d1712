"""dictated-type: type each final transcript into the focused application, as it arrives.

Live only (nothing said before it started is typed), waits for a daemon that is not running yet,
and follows it across restarts with no gap and no duplicate.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import zmq

from dictated.protocol import TOPIC_STATUS, TOPIC_TRANSCRIPT

from ..control import CommandFailed, ControlClient, DaemonUnavailable
from ..subscribe import Subscription, add_endpoint_options
from .backend import Backend, BackendUnavailable, TypingFailed
from .compose import COMMANDS, Backspace, ComposeOptions, Composer
from .detect import BACKENDS, choose
from .dryrun import DryRunBackend
from .gate import StateWatch, typed
from .notify import Notifier

log = logging.getLogger("dictated-type")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dictated-type", description=__doc__)
    p.add_argument(
        "--backend", choices=list(BACKENDS), help="how to type (default: detected for this session)"
    )
    p.add_argument("--dry-run", action="store_true", help="print what would be typed instead")
    p.add_argument(
        "--no-command",
        action="append",
        default=[],
        choices=COMMANDS,
        metavar="NAME",
        help=f"type this spoken command as words (repeatable): {', '.join(COMMANDS)}",
    )
    p.add_argument("--no-commands", action="store_true", help="type every spoken command as words")
    p.add_argument(
        "--armed-by-key",
        action="store_true",
        help="type only what was said while a key was held (`dictated ptt press`, dictated-hotkey)",
    )
    p.add_argument(
        "--no-notify", action="store_true", help="no desktop notification when typing is (dis)armed"
    )
    add_endpoint_options(p)
    p.add_argument("--count", type=int, metavar="N", help="exit after N transcripts")
    p.add_argument("--quiet", action="store_true", help="only errors on stderr")
    return p


def apply(backend: Backend, actions: list) -> None:
    for action in actions:
        if isinstance(action, Backspace):
            backend.backspace(action.count)
        else:
            backend.type_text(action.text)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM (a service manager, `kill`) ends like Ctrl-C, so the backend gives back its keys."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        format="dictated-type: %(message)s", level=logging.ERROR if args.quiet else logging.INFO
    )
    try:
        backend = DryRunBackend(sys.stdout) if args.dry_run else choose(args.backend)
    except BackendUnavailable as exc:
        log.error("%s", exc)
        return 2
    disabled = set(COMMANDS) if args.no_commands else set(args.no_command)
    composer = Composer(ComposeOptions(commands=frozenset(COMMANDS) - disabled))
    try:
        sub = Subscription(
            args.endpoint,
            control=ControlClient(args.control),
            topics=(TOPIC_TRANSCRIPT, TOPIC_STATUS),
            wait=True,
        )
    except zmq.ZMQError as exc:
        backend.close()
        log.error("cannot connect to %s: %s", args.endpoint or "the daemon", exc)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    transcripts = 0
    watch, notifier = StateWatch(), Notifier(enabled=not args.no_notify)
    try:
        for event in sub.events():
            if event.topic == TOPIC_STATUS:
                if change := watch.update(event.body):
                    log.warning("%s", change)
                    notifier.send(change)
                continue
            if event.topic != TOPIC_TRANSCRIPT:
                continue
            text = event.body.get("text")
            if typed(event.body, args.armed_by_key) and isinstance(text, str) and text.strip():
                actions = composer.feed(text, str(event.body.get("language") or ""))
                try:
                    apply(backend, actions)
                except TypingFailed as exc:
                    log.error("could not type utterance %s: %s", event.body.get("id"), exc)
            transcripts += 1
            if args.count and transcripts >= args.count:
                break
    except KeyboardInterrupt:
        pass
    except (DaemonUnavailable, CommandFailed) as exc:
        log.error("%s", exc)
        return 1
    finally:
        sub.close()
        backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
