"""The `dictated` command: a thin layer that parses, builds one Config, and calls the library.

Typed errors become messages and exit codes here and only here: 2 for configuration errors, 1 for
everything else the user can fix, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .errors import AudioError, ConfigError, DictatedError

log = logging.getLogger("dictated")


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by `run` and `transcribe`; each maps onto one config key."""
    p.add_argument(
        "--config", type=Path, help="config file (default: the platform config dir's config.toml)"
    )
    p.add_argument(
        "--engine", dest="engine.name", help="auto, whisper, cohere-torch, cohere-coreml, remote"
    )
    p.add_argument("--language", dest="engine.language", help="language code, e.g. en, de, ja")
    p.add_argument(
        "--model", dest="engine.model", help="model directory, name or hub repo for the engine"
    )
    p.add_argument(
        "--device",
        dest="engine.device",
        help="compute device for torch/whisper: auto, cpu, cuda, mps",
    )
    p.add_argument(
        "--compute-type",
        dest="engine.compute_type",
        help="whisper: int8, float16...; torch: float32, float16, bfloat16",
    )
    p.add_argument(
        "--compute-units",
        dest="engine.compute_units",
        choices=("all", "cpu_only", "cpu_and_gpu", "cpu_and_ne"),
        help="cohere-coreml: where CoreML may run (default all)",
    )
    p.add_argument(
        "--eos-bias",
        dest="engine.eos_bias",
        type=float,
        help="cohere: logit bias on EOS (default 0 f16, 4 int8)",
    )
    _add_remote_flags(p)
    p.add_argument(
        "--vad-aggressiveness", dest="segmenter.aggressiveness", type=int, help="webrtcvad mode 0-3"
    )
    p.add_argument(
        "--hangover-ms",
        dest="segmenter.hangover_ms",
        type=int,
        help="silence that ends an utterance",
    )
    p.add_argument("--log-level", dest="log.level", help="debug, info, warning, error")
    p.add_argument(
        "--log-json", dest="log.json", action="store_const", const=True, help="log JSON lines"
    )


def _add_remote_flags(p: argparse.ArgumentParser) -> None:
    """`--engine remote`: the [engine.remote] keys most often set per room (see docs/remote.md)."""
    g = p.add_argument_group("remote engine (OpenAI-compatible transcription servers, e.g. vLLM)")
    g.add_argument(
        "--remote-url",
        dest="engine.remote.urls",
        action="append",
        metavar="URL",
        help="server base URL, e.g. http://127.0.0.1:8000/v1 (repeatable: requests are spread)",
    )
    g.add_argument("--remote-model", dest="engine.remote.model", help="the served model name")
    g.add_argument(
        "--remote-timeout",
        dest="engine.remote.timeout_s",
        type=float,
        metavar="S",
        help="seconds one request may take (default 30)",
    )
    g.add_argument(
        "--remote-fallback",
        dest="engine.remote.fallback",
        choices=("none", "whisper"),
        help="transcribe locally when every server fails (default none: error event, audio kept)",
    )
    g.add_argument(
        "--remote-stream",
        dest="engine.remote.stream",
        action="store_const",
        const=True,
        help="ask for streamed (SSE) answers",
    )
    g.add_argument(
        "--remote-inference-path",
        dest="engine.remote.inference_path",
        metavar="PATH",
        help="endpoint path under the URL (default /audio/transcriptions; whisper.cpp: /inference)",
    )
    g.add_argument(
        "--remote-field",
        dest="engine.remote.fields",
        action="append",
        metavar="NAME=VALUE",
        help="extra form field sent with every request, e.g. repetition_penalty=1.1 (repeatable)",
    )
    g.add_argument(
        "--allow-remote-engine",
        dest="engine.remote.allow_remote",
        action="store_const",
        const=True,
        help="allow non-loopback --remote-url addresses (audio leaves this machine)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dictated", description="Local, always-on streaming dictation daemon."
    )
    parser.add_argument("--version", action="version", version=f"dictated {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="run the daemon: capture, segment, transcribe, publish")
    run.add_argument(
        "--source",
        dest="audio.source",
        help="mic (default), file:PATH, or - for raw s16le 16 kHz mono stdin",
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
        help="pace a file source like a microphone",
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
    _add_config_flags(run)
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
    _add_config_flags(tr)
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
    except DictatedError as exc:
        if not daemon.audio_driver_stuck:
            raise
        print(f"dictated: {exc}", file=sys.stderr)
        code = exc.exit_code
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
    from .transcribe import transcribe_file, transcribe_whole

    config = _load(args)
    for path in args.files:  # a missing file is reported before the model loads
        if not path.is_file():
            raise AudioError(f"audio file not found: {path}")
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
                if args.json:
                    print(
                        json.dumps({"engine": engine.name, **result.to_json()}, ensure_ascii=False),
                        flush=True,
                    )
                elif result.transcript.text:
                    prefix = f"{path}: " if many else ""
                    print(f"{prefix}{result.transcript.text}", flush=True)
                if captions:
                    cues = timeline.place(
                        {
                            "text": result.transcript.text,
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
    from .config import load_config
    from .protocol import CONTROL_SOCKET

    if args.control:
        return args.control
    directory = (
        Path(args.runtime_dir)
        if args.runtime_dir
        else load_config(args.config).transport.socket_dir()
    )
    return paths.ipc_endpoint(directory, CONTROL_SOCKET)


def cmd_control(args: argparse.Namespace) -> int:
    from .clients.control import ControlClient

    client = ControlClient(_control_endpoint(args))
    extra = {"language": args.language} if args.cmd == "language" and args.language else {}
    reply = client.request(args.cmd, **extra)
    if args.json:
        print(json.dumps(reply, ensure_ascii=False, indent=2))
    elif args.cmd == "status":
        from .status_view import format_status

        print(format_status(reply))
    else:
        print(reply.get("state") or reply.get("language"))
    return 0


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
        while tables:  # nested tables after their parent's keys, as TOML requires
            name, value = tables.pop(0)
            print(f"\n[{name}]")
            tables += _print_table(value, name)
    return 0


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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except DictatedError as exc:
        print(f"dictated: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # control-socket client errors and the like
        from .clients.control import CommandFailed, DaemonUnavailable

        if isinstance(exc, DaemonUnavailable | CommandFailed):
            print(f"dictated: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
