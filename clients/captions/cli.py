"""dictated-captions: live captions of what the daemon hears, as SRT/WebVTT files, a web page or a terminal view.

Cues are timed by where the speech is in the audio stream, so captions of a recording line up
with it and live ones with the meeting; the files are valid at every moment.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path

import zmq

from dictated.protocol import CONTROL_SOCKET, EVENTS_SOCKET, default_endpoint

from ..control import CommandFailed, ControlClient, DaemonUnavailable
from ..speakers import Speakers, add_speaker_options, speakers_from
from ..subscribe import Subscription, add_endpoint_options
from .captioner import TOPICS, Captioner
from .cues import CaptionOptions, Timeline
from .terminal import TerminalView
from .web import CaptionFeed, CaptionServer
from .web_hosts import check_name, is_loopback
from .writers import CaptionFileError, CaptionFileExists, CueFile

log = logging.getLogger("dictated.captions")

PROBE_S = 2.0  # with no event for this long, ask the daemon's state (it may have gone away)
RETRY_S = 1.0  # how often to look for a daemon that is not running yet


class UsageError(ValueError):
    """A bad option (exit 2)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dictated-captions", description=__doc__)
    p.add_argument("--srt", type=Path, metavar="FILE", help="append SubRip cues to FILE")
    p.add_argument("--vtt", type=Path, metavar="FILE", help="append WebVTT cues to FILE")
    p.add_argument(
        "--overwrite", action="store_true", help="replace caption files that already exist"
    )
    p.add_argument(
        "--web", type=int, metavar="PORT", help="serve a live caption page on PORT (0: any)"
    )
    p.add_argument(
        "--web-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address for --web (default 127.0.0.1; others need --allow-remote)",
    )
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="let --web-host be a non-loopback address: anyone who can reach it reads the captions",
    )
    p.add_argument(
        "--web-allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests for this host name (repeatable; e.g. the name a proxy or "
        "your network gives this machine); others are refused against DNS rebinding",
    )
    p.add_argument(
        "--since", type=int, metavar="SEQ", help="first caption what the journal holds after SEQ"
    )
    add_endpoint_options(p)
    p.add_argument(
        "--line-chars", type=int, default=CaptionOptions.line_chars, help="characters per line"
    )
    p.add_argument("--lines", type=int, default=CaptionOptions.max_lines, help="lines per cue")
    add_speaker_options(p)
    p.add_argument("--count", type=int, metavar="N", help="exit after N transcripts")
    p.add_argument(
        "--idle-exit", type=float, metavar="S", help="exit after S seconds without any event"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log connection details")
    return p


def _speakers(args: argparse.Namespace) -> Speakers:
    try:
        return speakers_from(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _options(args: argparse.Namespace) -> CaptionOptions:
    if args.line_chars < 10:
        raise UsageError(f"--line-chars must be at least 10, got {args.line_chars}")
    if args.lines < 1:
        raise UsageError(f"--lines must be at least 1, got {args.lines}")
    if args.since is not None and args.since < 0:
        raise UsageError(f"--since must be a seq >= 0, got {args.since}")
    if args.web is not None and not 0 <= args.web <= 65535:
        raise UsageError(f"--web: {args.web} is not a port number")
    if args.web is not None and not is_loopback(args.web_host) and not args.allow_remote:
        raise UsageError(
            f"--web-host {args.web_host} is reachable from other machines: add --allow-remote "
            "if everyone who can reach it may read the captions"
        )
    for name in args.web_allow_host:
        try:
            check_name(name)
        except ValueError as exc:
            raise UsageError(f"--web-allow-host: {exc}") from None
    if args.srt and args.vtt and args.srt.resolve() == args.vtt.resolve():
        raise UsageError("--srt and --vtt name the same file")
    return CaptionOptions(line_chars=args.line_chars, max_lines=args.lines)


def _open_outputs(args: argparse.Namespace, captioner: Captioner) -> CaptionServer | None:
    files = []
    for fmt, path in (("srt", args.srt), ("vtt", args.vtt)):
        if path is not None:
            files.append(CueFile(path, fmt, overwrite=args.overwrite))
            log.info("writing %s captions to %s", fmt, path)
    captioner.files = files
    server = None
    if args.web is not None:
        captioner.feed = CaptionFeed()
        server = CaptionServer(
            captioner.feed, args.web_host, args.web, allowed_hosts=args.web_allow_host
        )
        server.start()
        print(f"dictated-captions: live captions at {server.url}", file=sys.stderr, flush=True)
    if not files and server is None:
        captioner.view = TerminalView()
    return server


def follow(args: argparse.Namespace, captioner: Captioner) -> None:
    """Caption events until --count/--idle-exit; wait for a daemon, survive its restarts.

    A Subscription resumes from its last seq with history, so nothing is missed or repeated.
    While no event comes the daemon is asked how it is: when it went away and came back (or its
    pid changed: a quick restart), or has published past the last seq seen, the subscription
    starts again from that seq, so what a new daemon said before the socket reconnected is
    fetched at once, not at its next event.
    """
    endpoint = args.endpoint or default_endpoint(EVENTS_SOCKET)
    control_endpoint = args.control or default_endpoint(CONTROL_SOCKET)
    control = ControlClient(control_endpoint)
    probe = ControlClient(control_endpoint, timeout_s=1.0)
    since = args.since
    pid: int | None = None
    try:
        status = probe.request("status")
        pid = status.get("pid")
        if since is None and isinstance(status.get("seq"), int):
            since = status["seq"]  # live: from now, so the connect window loses nothing
    except DaemonUnavailable:
        pass  # not running yet: everything it will say is new
    last_event = time.monotonic()
    waiting = False

    def idle() -> bool:
        return args.idle_exit is not None and time.monotonic() - last_event > args.idle_exit

    while not idle():
        try:
            sub = Subscription(endpoint, control=control, since=since, topics=TOPICS)
        except DaemonUnavailable:  # --since asks history first: wait for a daemon to answer
            if not waiting:
                captioner.state("waiting", f"no daemon at {control_endpoint} yet")
                waiting = True
            time.sleep(RETRY_S)
            continue
        try:
            while not idle():
                for event in sub.events(timeout_s=PROBE_S):
                    last_event = time.monotonic()
                    captioner.handle(event)
                    if args.count and captioner.transcripts >= args.count:
                        return
                captioner.tick()  # quiet: what the files held back for time order is due
                try:
                    status = probe.request("status")
                except DaemonUnavailable:
                    if not waiting:
                        captioner.state("waiting", f"no daemon at {control_endpoint}")
                        waiting = True
                    continue
                captioner.state(str(status.get("state", "unknown")))
                restarted = waiting or (pid is not None and status.get("pid") != pid)
                seq = status.get("seq")
                behind = isinstance(seq, int) and sub.last_seq is not None and seq > sub.last_seq
                waiting, pid = False, status.get("pid")
                if (restarted or behind) and sub.last_seq is not None:
                    log.info(
                        "daemon %s; catching up from seq %d",
                        "restarted" if restarted else f"is at seq {seq}",
                        sub.last_seq,
                    )
                    break  # subscribe again from the last seq: history has what we missed
        except DaemonUnavailable:  # it went away while we asked for what we missed
            time.sleep(RETRY_S)
        finally:
            since = sub.last_seq if sub.last_seq is not None else since
            sub.close()


def _stop_on_sigterm() -> None:
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        format="dictated-captions: %(message)s",
        level=logging.INFO if args.verbose else logging.WARNING,
    )
    try:
        options, speakers = _options(args), _speakers(args)
    except UsageError as exc:
        parser.error(str(exc))  # exit 2
    captioner = Captioner(Timeline(options), speakers=speakers)
    server = None
    try:
        server = _open_outputs(args, captioner)
    except CaptionFileError as exc:
        captioner.close()
        print(f"dictated-captions: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, CaptionFileExists) else 1
    except OSError as exc:  # the web port is taken or not ours to bind
        captioner.close()
        print(
            f"dictated-captions: cannot serve on {args.web_host}:{args.web}: {exc}", file=sys.stderr
        )
        return 1
    _stop_on_sigterm()
    try:
        follow(args, captioner)
    except KeyboardInterrupt:
        pass
    except CommandFailed as exc:
        print(f"dictated-captions: the daemon refused: {exc}", file=sys.stderr)
        return 1
    except CaptionFileError as exc:
        print(f"dictated-captions: {exc}", file=sys.stderr)
        return 1
    except zmq.ZMQError as exc:
        print(f"dictated-captions: cannot connect: {exc}", file=sys.stderr)
        return 2
    finally:
        if server is not None:
            server.stop()
        captioner.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
