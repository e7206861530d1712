"""The command line's config flags: each one is a config key (`dest="section.key"`), declared once.

`run` and `transcribe` share them; `cli.py` turns the parsed flags into overrides of one Config.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_config_flags(p: argparse.ArgumentParser) -> None:
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
        help="whisper: int8, float16...; cohere-torch: float32, bfloat16, float16, int8 (default: bf16 where the CPU/GPU has it natively, else fp32)",
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
    add_remote_flags(p)
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


def add_remote_flags(p: argparse.ArgumentParser) -> None:
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
    g.add_argument(
        "--allow-insecure-api-key",
        dest="engine.remote.allow_insecure_api_key",
        action="store_const",
        const=True,
        help="send the API key over plain http to a non-loopback server (anyone on the path reads it)",
    )
