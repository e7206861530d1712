"""dictated-tail: print live transcripts; `--since SEQ` replays history first, with no gap or duplicate.

`--partials` also shows the text of the utterance still being spoken: on a terminal one line
that is rewritten in place (carriage return) until the final text replaces it; elsewhere (a
pipe, a file) one `partial:` line per update, so nothing is overwritten in a log.

Text is printed with its control characters escaped (`\x1b`, `\u202e`, `\n`), so a transcript
cannot drive the terminal, fake a line or reorder what it shows; `--json` lines escape them too.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import zmq

from dictated.protocol import (
    TOPIC_ERROR,
    TOPIC_PARTIAL,
    TOPIC_TRANSCRIPT,
    Event,
    escape_controls,
    json_line,
)

from .control import CommandFailed, ControlClient, DaemonUnavailable
from .speakers import Speakers, add_speaker_options, speakers_from
from .subscribe import Subscription, add_endpoint_options


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
    add_endpoint_options(p)
    p.add_argument(
        "--partials",
        action="store_true",
        help="show the text of the utterance being spoken, updated in place on a terminal",
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
    add_speaker_options(p)
    p.add_argument("--count", type=int, metavar="N", help="exit after N transcripts")
    p.add_argument(
        "--idle-exit", type=float, metavar="S", help="exit after S seconds without any event"
    )
    return p


class Printer:
    """Writes transcripts (and partials) as text; the one open partial line is kept on a tty."""

    CLEAR = "\r\x1b[K"  # back to the line's start and erase it

    def __init__(
        self, out: TextIO, err: TextIO, partials: bool, tty: bool, speakers: Speakers | None = None
    ):
        self.out, self.err = out, err
        self.partials, self.tty = partials, tty
        self.speakers = speakers or Speakers()
        self._open = False  # a partial line is on screen, not yet ended

    def show(self, event: Event) -> None:
        body = event.body
        if event.topic == TOPIC_PARTIAL and self.partials:
            text = self._labelled(body, body.get("text", ""))
            if self.tty:
                self.out.write(f"{self.CLEAR}{text}")
                self._open = True
            else:
                self.out.write(f"partial: {text}\n")
        elif event.topic == TOPIC_TRANSCRIPT:
            self._close()
            if body.get("text"):
                self.out.write(f"{self._labelled(body, body['text'])}\n")
        elif event.topic == TOPIC_ERROR:
            self._close()
            self.out.flush()
            print(f"error: {_shown(body.get('message'))}", file=self.err, flush=True)
        self.out.flush()

    def _labelled(self, body: Mapping[str, Any], text: object) -> str:
        """`[me] text` where the event names a speaker; the text alone where none is known."""
        speaker = self.speakers.of(body)
        return f"[{speaker}] {_shown(text)}" if speaker else _shown(text)

    def show_json(self, event: Event) -> None:
        """The event as one JSON line (controls escaped as \\uXXXX: the same JSON value)."""
        print(json_line({"topic": event.topic, **event.body}), file=self.out, flush=True)

    def _close(self) -> None:
        if self._open:
            self.out.write(self.CLEAR)
            self._open = False


def _shown(text: object) -> str:
    """Text for the terminal: a transcript's control and bidi characters escaped, never obeyed."""
    return escape_controls(str(text))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        speakers = speakers_from(args)
    except ValueError as exc:
        parser.error(str(exc))  # exit 2
    logging.basicConfig(  # the subscription's notices (waiting, went away; --wait: connected)
        format="dictated-tail: %(message)s", level=logging.INFO if args.wait else logging.WARNING
    )
    needs_control = args.since is not None or args.wait
    control = ControlClient(args.control) if needs_control else None
    try:
        sub = Subscription(
            args.endpoint,
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
    printer = Printer(sys.stdout, sys.stderr, args.partials, sys.stdout.isatty(), speakers)
    try:
        for event in sub.events(timeout_s=args.idle_exit):
            if args.json:
                printer.show_json(event)
            else:
                printer.show(event)
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
