"""The `dictated` command: a thin layer that parses, builds one Config, and calls the library.

Typed errors become messages and exit codes here and only here (`exit_code`), so a service
manager can tell what a restart may fix:

- 0: done (a file or stdin source ran to its end, a command succeeded);
- 1: a restart may fix it: a device gone, a server or daemon not reachable, a crash;
- 2: a restart cannot fix it: bad config or usage, unknown engine, a missing engine package or
  model, no such file or not audio (systemd's unit has `RestartPreventExitStatus=2`);
- 130: Ctrl-C; 141: stdout closed early (`dictated status | head -1`), as a tool killed by SIGPIPE.
"""

from __future__ import annotations

import time

#: when this command was run: a `ptt` request says it (`at`), so a press from a process that was
#: slow to start lands where the key went down, and one overtaken by its release is dropped
STARTED_AT = time.time()

import argparse  # noqa: E402  (after STARTED_AT: the time is taken first)
import asyncio  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from . import __version__  # noqa: E402
from .cli_flags import add_config_flags  # noqa: E402
from .control_state import MODES, PttAction  # noqa: E402
from .errors import ConfigError, DictatedError  # noqa: E402

log = logging.getLogger("dictated")

EXIT_RESTART_MAY_FIX = 1
EXIT_PERMANENT = 2
EXIT_INTERRUPTED = 130
EXIT_CLOSED_PIPE = 128 + 13  # 141: what a shell reports for a writer killed by SIGPIPE


def exit_code(exc: DictatedError) -> int:
    """2 for what a restart cannot fix (the error says it is `permanent`), 1 for the rest."""
    return EXIT_PERMANENT if exc.permanent else EXIT_RESTART_MAY_FIX


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dictated", description="Local, always-on streaming dictation daemon."
    )
    parser.add_argument("--version", action="version", version=f"dictated {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="run the daemon: capture, segment, transcribe, publish")
    run.add_argument(
        "--source",
        dest="audio.sources",
        action="append",
        metavar="[LABEL=]SPEC",
        help="mic (default), system, file:PATH, or - for raw s16le 16 kHz mono stdin; "
        "repeat for several channels, e.g. --source me=mic --source them=system",
    )
    run.add_argument(
        "--input-device",
        dest="audio.device",
        help="microphone name (substring) or index; see `dictated devices`",
    )
    run.add_argument(
        "--realtime",
        dest="audio.realtime",
        action="store_const",
        const=True,
        help="pace a file or stdin source like a microphone (not for a live capture on stdin)",
    )
    run.add_argument(
        "--pub",
        action="append",
        default=[],
        metavar="ENDPOINT",
        help="extra events endpoint, e.g. tcp://127.0.0.1:5556 (repeatable)",
    )
    run.add_argument(
        "--allow-remote",
        dest="transport.allow_remote",
        action="store_const",
        const=True,
        help="allow non-loopback --pub addresses",
    )
    run.add_argument(
        "--speculation",
        dest="speculation.mode",
        choices=("auto", "on", "off"),
        help="decode during pauses so the text is ready when speech ends (default auto: on)",
    )
    run.add_argument(
        "--partials",
        dest="speculation.partials",
        choices=("off", "on", "cheap"),
        help="publish the open utterance's text on the `partial` topic (default cheap: where the "
        "engine decodes a short clip cheaply; never Whisper)",
    )
    run.add_argument(
        "--runtime-dir", dest="transport.runtime_dir", help="directory for the ipc sockets"
    )
    run.add_argument(
        "--linger",
        dest="transport.linger_s",
        type=float,
        help="seconds to keep publishing after end of input",
    )
    run.add_argument("--journal", dest="journal.path", help="transcript journal (JSONL)")
    run.add_argument(
        "--mode",
        dest="control.mode",
        choices=MODES,
        help="continuous (default): the voice opens utterances; push-to-talk: only speech while "
        "a key is held (`dictated ptt press/release`, dictated-hotkey) becomes text",
    )
    add_config_flags(run)
    run.set_defaults(func=cmd_run)

    tr = sub.add_parser("transcribe", help="transcribe files in-process, one line per utterance")
    tr.add_argument("files", nargs="+", type=Path, metavar="FILE")
    tr.add_argument(
        "--json", action="store_true", help="one JSON object per utterance (with token ids)"
    )
    tr.add_argument(
        "--no-vad", action="store_true", help="transcribe each file whole (split only past 35 s)"
    )
    tr.add_argument("--srt", type=Path, metavar="OUT", help="also write SubRip captions to OUT")
    tr.add_argument("--vtt", type=Path, metavar="OUT", help="also write WebVTT captions to OUT")
    tr.add_argument(
        "--overwrite", action="store_true", help="replace caption files that already exist"
    )
    add_config_flags(tr)
    tr.set_defaults(func=cmd_transcribe)

    def control_command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument(
            "--control", metavar="ENDPOINT", help="control endpoint (default: from the config)"
        )
        p.add_argument(
            "--runtime-dir", help="the daemon's socket directory, if it was started with one"
        )
        p.add_argument("--config", type=Path, help="config file whose transport.runtime_dir to use")
        p.add_argument("--json", action="store_true", help="print the raw reply")
        p.set_defaults(func=cmd_control, cmd=name)
        return p

    control_command("status", "show the running daemon's state")
    control_command("pause", "stop listening")
    control_command("resume", "listen again")
    lang = control_command("language", "show or set the running daemon's language")
    lang.add_argument("language", nargs="?", help="language code; omit to show the current one")
    ptt = control_command(
        "ptt", "push-to-talk: a key went down (press), up (release) or was tapped (toggle)"
    )
    ptt.add_argument("action", choices=tuple(PttAction))
    ptt.add_argument(
        "--channel", metavar="LABEL", help="the channel (default: the microphone's, else the first)"
    )
    control_command("toggle", "listening on/off (off releases the microphone, as pause does)")
    typing = control_command("typing", "arm or disarm typing clients (dictated-type)")
    typing.add_argument("armed", choices=("on", "off", "toggle"))

    dev = sub.add_parser("devices", help="list audio input devices")
    dev.set_defaults(func=cmd_devices)

    cfg = sub.add_parser("config", help="show the effective configuration and where it comes from")
    cfg.add_argument("--config", type=Path)
    cfg.set_defaults(func=cmd_config)

    try:
        from .models_command import register
    except ImportError:  # pragma: no cover - the models command ships with the CoreML work
        pass
    else:
        register(sub)
    from .doctor.cli import register as register_doctor
    from .service.cli import register as register_service

    register_service(sub)
    register_doctor(sub)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if "." in k}


def _load(args: argparse.Namespace):
    from .config import load_config
    from .logs import setup_logging

    overrides = _overrides(args)
    config = load_config(getattr(args, "config", None), overrides)
    if getattr(args, "pub", None):  # --pub adds to the config file's endpoints
        from .config import check_endpoint

        for endpoint in args.pub:
            check_endpoint(endpoint, config.transport.allow_remote, key="--pub")
        import dataclasses

        transport = dataclasses.replace(config.transport, pub=(*config.transport.pub, *args.pub))
        config = dataclasses.replace(config, transport=transport)
    setup_logging(config.log.level, config.log.json)
    return config


def cmd_run(args: argparse.Namespace) -> int:
    from .server import Daemon

    config = _load(args)
    # SIGHUP reads the file again, with this command line's flags still on top
    daemon = Daemon(config, reload_config=lambda: _load(args))
    try:
        code = asyncio.run(daemon.serve())
        if code and daemon.failure is not None:  # the source failed: could a restart fix it?
            code = exit_code(daemon.failure)
    except DictatedError as exc:
        if not daemon.audio_driver_stuck:
            raise
        print(f"dictated: {exc}", file=sys.stderr)
        code = exit_code(exc)
    if daemon.audio_driver_stuck:
        # PortAudio would wait forever at interpreter exit for its thread stuck in the driver.
        # Everything is journaled and published, so leave without it: launchd/systemd see the
        # exit and can restart the daemon.
        log.warning("the audio driver is stuck; exiting without waiting for it")
        logging.shutdown()
        os._exit(code)
    return code


def _caption_files(args: argparse.Namespace) -> list:
    """The --srt/--vtt outputs, opened before any work (an existing file is a usage error)."""
    from .clients.captions.writers import CaptionFileError, CaptionFileExists, CueFile

    wanted = [(fmt, path) for fmt, path in (("srt", args.srt), ("vtt", args.vtt)) if path]
    if not wanted:
        return []
    if len(args.files) > 1:
        raise ConfigError("--srt/--vtt caption one recording at a time: give one FILE")
    if args.no_vad:
        raise ConfigError("--srt/--vtt need the utterances' times: drop --no-vad")
    files: list = []
    try:
        for fmt, path in wanted:
            files.append(CueFile(path, fmt, overwrite=args.overwrite))
    except CaptionFileError as exc:
        for f in files:
            f.close()
        raise (ConfigError if isinstance(exc, CaptionFileExists) else DictatedError)(
            str(exc)
        ) from exc
    return files


def cmd_transcribe(args: argparse.Namespace) -> int:
    from .clients.captions.cues import Timeline
    from .engines.registry import create_engine
    from .protocol import escape_controls, json_line, plain_text
    from .transcribe import check_files, transcribe_file, transcribe_whole

    config = _load(args)
    check_files(args.files)  # a missing or bad file is reported before the model loads
    captions = _caption_files(args)
    engine = create_engine(config.engine.name, config.engine_options)
    try:
        language = engine.check_language(config.engine.language)
    except ValueError as exc:
        raise ConfigError(f"engine.language: {exc}") from exc
    many = len(args.files) > 1
    timeline = Timeline()
    try:
        for path in args.files:
            if args.no_vad:
                results = [transcribe_whole(path, engine, language)]
            else:
                results = transcribe_file(path, engine, language, config.segmenter)
            for result in results:
                # shown, never acted on: a terminal must not run the text's control characters
                if args.json:
                    print(json_line({"engine": engine.name, **result.to_json()}), flush=True)
                elif result.transcript.text:
                    prefix = f"{path}: " if many else ""
                    print(escape_controls(f"{prefix}{result.transcript.text}"), flush=True)
                if captions:
                    cues = timeline.place(
                        {
                            "text": plain_text(result.transcript.text),
                            "stream_start": result.speech_start_s,
                            "stream_end": result.speech_end_s,
                        }
                    )
                    try:
                        for f in captions:
                            f.append(cues)
                    except OSError as exc:  # a full disk: the message names the file
                        raise DictatedError(str(exc)) from exc
    finally:
        for f in captions:
            f.close()
        engine.close()
    return 0


def _control_endpoint(args: argparse.Namespace) -> str:
    """Where the daemon listens: --control, else --runtime-dir, else the config's socket dir."""
    from . import paths
    from .protocol import CONTROL_SOCKET

    if args.control:
        return args.control
    if args.runtime_dir:
        return paths.ipc_endpoint(Path(args.runtime_dir), CONTROL_SOCKET)
    from .config import load_config  # only here: it brings the engines' options (numpy)

    return paths.ipc_endpoint(load_config(args.config).transport.socket_dir(), CONTROL_SOCKET)


def cmd_control(args: argparse.Namespace) -> int:
    from .clients.control import ControlClient
    from .protocol import escape_controls, json_line

    client = ControlClient(_control_endpoint(args))
    reply = client.request(args.cmd, **_request_args(args))
    if args.json:
        print(json_line(reply, indent=2))
    elif args.cmd == "status":
        from .status_view import format_status

        print(format_status(reply))
    elif args.cmd in ("ptt", "toggle", "typing"):
        from .status_view import control_line

        print(control_line(reply))
    else:
        print(escape_controls(str(reply.get("state") or reply.get("language"))))
    return 0


def _request_args(args: argparse.Namespace) -> dict[str, Any]:
    """The control request's arguments from a command's own (status, pause ... have none)."""
    if args.cmd == "language":
        return {"language": args.language} if args.language else {}
    if args.cmd == "ptt":
        channel = {"channel": args.channel} if args.channel else {}
        return {"action": args.action, "at": round(STARTED_AT, 3), **channel}
    if args.cmd == "typing":
        return {"armed": {"on": True, "off": False}.get(args.armed, args.armed)}
    return {}


def cmd_devices(args: argparse.Namespace) -> int:
    from .audio.devices import format_device_table, list_input_devices

    print(format_device_table(list_input_devices()))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Print the effective configuration as TOML, grouped the way the file is written."""
    from . import paths
    from .config import SECTIONS, load_config

    config = load_config(args.config)
    print(f"# config file: {config.source_file or f'{paths.config_file()} (absent: defaults)'}")
    for section, attrs in SECTIONS.items():
        tables: list[tuple[str, Any]] = []
        print(f"\n[{section}]")
        for attr in attrs:
            tables += _print_table(getattr(config, attr), section)
        if section == "speakers":  # a free table: label -> name, as given or defaulted
            speakers = _speakers(config)
            for label, name in speakers.items():
                print(f"{label} = {json.dumps(name)}")
        while tables:  # nested tables after their parent's keys, as TOML requires
            name, value = tables.pop(0)
            print(f"\n[{name}]")
            tables += _print_table(value, name)
    return 0


def _speakers(config: Any) -> dict[str, str]:
    """Each channel's speaker name (configured or defaulted), and names of absent labels."""
    from .channel_spec import speaker_of

    specs = config.audio.channels()
    named = {c.label: speaker_of(c, config.speakers, len(specs)) for c in specs}
    return {**config.speakers, **{k: v for k, v in named.items() if v is not None}}


def _print_table(options: Any, name: str) -> list[tuple[str, Any]]:
    """Print one dataclass's keys (secrets hidden); return its nested tables for later."""
    import dataclasses

    nested = []
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if dataclasses.is_dataclass(value):
            nested.append((f"{name}.{f.name}", value))
        elif value is None:
            print(f"# {f.name} = (default)")
        elif f.metadata.get("secret"):
            print(f'{f.name} = "(set, hidden)"')
        else:
            print(f"{f.name} = {json.dumps(value, default=str)}")
    return nested


def _stdout_closed() -> int:
    """The reader went away (`| head -1`): nothing more can be said, so say nothing. stdout now
    points at /dev/null, so the interpreter's own flush at exit cannot raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):  # no real stdout to replace
        pass
    return EXIT_CLOSED_PIPE


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, where it is handled, not at exit
        return code
    except BrokenPipeError:
        return _stdout_closed()
    except DictatedError as exc:
        print(f"dictated: {exc}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # control-socket client errors and the like
        from .clients.control import CommandFailed, DaemonUnavailable, UnsafeEndpoint

        if isinstance(exc, DaemonUnavailable | CommandFailed):
            print(f"dictated: {exc}", file=sys.stderr)
            # a socket directory another account controls does not fix itself
            return EXIT_PERMANENT if isinstance(exc, UnsafeEndpoint) else EXIT_RESTART_MAY_FIX
        raise


if __name__ == "__main__":
    sys.exit(main())
