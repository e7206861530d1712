"""`dictated doctor [--json]`: one line per check, what to do under each failure, exit 1 if broken."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

_MARKS = {"ok": "✓", "warn": "!", "fail": "✗", "skip": "-"}
_ASCII = {"ok": "ok", "warn": "!!", "fail": "XX", "skip": "--"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor",
        help="check audio, engine, sockets, daemon, hotkey and service; say what to fix",
        description="Check everything the daemon needs; exit 1 when something is broken.",
    )
    p.add_argument("--config", type=Path, help="config file to check (default: the platform's)")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.add_argument(
        "--mic-seconds", type=float, default=0.5, help="how long to record from the microphone"
    )
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    from ..logs import setup_logging
    from .checks import FAIL, WARN, broken, run_checks

    setup_logging("error")  # the report says it all; the mic's own warnings would repeat it
    results = run_checks(args.config, mic_seconds=args.mic_seconds)
    code = 1 if broken(results) else 0
    if args.json:
        print(json.dumps({"ok": code == 0, "checks": [r.to_json() for r in results]}, indent=2))
    else:
        marks = _MARKS if _can_encode("✓✗›") else _ASCII
        width = max(len(r.name) for r in results)
        for r in results:
            print(f"{marks[r.status]} {r.name:<{width}}  {r.summary}")
            if r.fix and r.status in (FAIL, WARN):
                for line in r.fix.splitlines():
                    print(f"    → {line}" if marks is _MARKS else f"    -> {line}")
        failed = sum(r.status == FAIL for r in results)
        print(f"\n{failed} problem(s) found" if failed else "\nno problems found")
    sys.stdout.flush()
    _exit_if_audio_driver_stuck(code)
    return code


def _can_encode(text: str) -> bool:
    try:
        text.encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _exit_if_audio_driver_stuck(code: int) -> None:
    """PortAudio waits forever at exit for a thread stuck in a hung driver (see cli.cmd_run)."""
    import threading

    if any(t.name == "dictated-mic-close" and t.is_alive() for t in threading.enumerate()):
        logging.shutdown()
        os._exit(code)
