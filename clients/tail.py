"""dictated-tail: print live transcripts; `--since SEQ` replays history first, with no gap or duplicate."""

from __future__ import annotations

import argparse
import json
import logging
import sys

import zmq

from dictated.protocol import TOPIC_ERROR, TOPIC_TRANSCRIPT

from .control import CommandFailed, ControlClient, DaemonUnavailable
from .subscribe import Subscription


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dictated-tail", description=__doc__)
    p.add_argument(
        "--json",
        action="store_true",
        help="print raw events (all topics, or --topic) as JSON lines",
    )
    p.add_argument(
        "--since", type=int, metavar="SEQ", help="first replay events after SEQ from the journal"
    )
    p.add_argument(
        "--connect",
        "--endpoint",
        dest="connect",
        metavar="ENDPOINT",
        help="events endpoint (default: the per-user ipc socket)",
    )
    p.add_argument(
        "--control", metavar="ENDPOINT", help="control endpoint (default: the per-user ipc socket)"
    )
    p.add_argument(
        "--topic",
        action="append",
        metavar="TOPIC",
        help="only this topic (repeatable; default: all), e.g. --topic transcript for editors",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="wait for a daemon that is not running yet or restarts (notices on stderr) instead of exiting",
    )
    p.add_argument("--count", type=int, metavar="N", help="exit after N transcripts")
    p.add_argument(
        "--idle-exit", type=float, metavar="S", help="exit after S seconds without any event"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.wait:  # the subscription's notices (waiting, connected, went away) go to stderr
        logging.basicConfig(format="dictated-tail: %(message)s", level=logging.INFO)
    needs_control = args.since is not None or args.wait
    control = ControlClient(args.control) if needs_control else None
    try:
        sub = Subscription(
            args.connect,
            control=control,
            topics=args.topic or ("",),
            since=args.since,
            wait=args.wait,
        )
    except (DaemonUnavailable, CommandFailed) as exc:
        print(f"dictated-tail: {exc}", file=sys.stderr)
        return 1
    except zmq.ZMQError as exc:
        print(f"dictated-tail: cannot connect: {exc}", file=sys.stderr)
        return 1
    transcripts = 0
    try:
        for event in sub.events(timeout_s=args.idle_exit):
            if args.json:
                print(
                    json.dumps({"topic": event.topic, **event.body}, ensure_ascii=False), flush=True
                )
            elif event.topic == TOPIC_TRANSCRIPT and event.body.get("text"):
                print(event.body["text"], flush=True)
            elif event.topic == TOPIC_ERROR:
                print(f"error: {event.body.get('message')}", file=sys.stderr, flush=True)
            if event.topic == TOPIC_TRANSCRIPT:
                transcripts += 1
                if args.count and transcripts >= args.count:
                    break
    except KeyboardInterrupt:
        pass
    except (DaemonUnavailable, CommandFailed) as exc:
        print(f"dictated-tail: {exc}", file=sys.stderr)
        return 1
    finally:
        sub.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
