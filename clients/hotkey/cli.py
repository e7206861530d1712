"""dictated-hotkey: hold a key to talk (push-to-talk), or tap it to start and stop.

Each press and release of the key becomes `dictated ptt press` / `dictated ptt release` on the
running daemon. A daemon that is not running, or restarts, is waited for: the key does nothing
until one answers, and this program keeps running.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from dictated.protocol import CONTROL_SOCKET, default_endpoint

from ..control import CommandFailed, ControlClient, DaemonUnavailable
from .backend import HotkeyUnavailable, Listener
from .detect import BACKENDS, choose
from .keys import BadKey, parse_combo
from .trigger import Mode, Sender, SenderOptions, Trigger, describe

log = logging.getLogger("dictated-hotkey")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dictated-hotkey", description=__doc__)
    p.add_argument(
        "--key",
        default="F9",
        help="the key, modifiers allowed: F9, ctrl+alt+space, <ctrl>+<alt>+d (default: F9)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--hold",
        dest="mode",
        action="store_const",
        const=Mode.HOLD,
        help="talk while the key is held (push-to-talk; the default)",
    )
    mode.add_argument(
        "--toggle",
        dest="mode",
        action="store_const",
        const=Mode.TOGGLE,
        help="tap the key to start talking, tap again to stop",
    )
    p.set_defaults(mode=Mode.HOLD)
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="x11: grab the key (X11); pynput: macOS; evdev: /dev/input (any Linux, Wayland too)",
    )
    p.add_argument(
        "--channel",
        metavar="LABEL",
        help="the daemon's channel (default: its microphone's, else its first)",
    )
    p.add_argument(
        "--control", metavar="ENDPOINT", help="control endpoint (default: the per-user ipc socket)"
    )
    p.add_argument(
        "--runtime-dir", help="the daemon's socket directory, if it was started with one"
    )
    p.add_argument("--quiet", action="store_true", help="only errors on stderr")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        format="dictated-hotkey: %(message)s",
        level=logging.WARNING if args.quiet else logging.INFO,
    )
    try:
        combo = parse_combo(args.key)
        listener: Listener = choose(args.backend, combo)
    except (BadKey, HotkeyUnavailable, ValueError) as exc:
        log.error("%s", exc)
        return 2
    control = ControlClient(args.control or default_endpoint(CONTROL_SOCKET, args.runtime_dir))
    sender = Sender(control, SenderOptions(channel=args.channel))
    try:
        state = control.request("status")
        sender.held = bool(state.get("held", False))
        log.info("daemon: %s", describe(state))
    except DaemonUnavailable as exc:
        log.warning("%s; waiting for it", exc)
    except CommandFailed as exc:
        log.error("%s", exc)
        listener.close()
        return 1
    trigger = Trigger(args.mode, sender)
    what = "hold" if args.mode is Mode.HOLD else "tap"
    log.info("%s %s to talk (%s backend); Ctrl-C to quit", what, combo, listener.name)
    signal.signal(signal.SIGTERM, lambda *_: listener.stop())
    signal.signal(signal.SIGINT, lambda *_: listener.stop())
    sender.start()
    try:
        listener.run(trigger)
    except HotkeyUnavailable as exc:
        log.error("%s", exc)
        return 1
    finally:
        trigger.finish()
        sender.close()
        listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
