"""`dictated models pull|list|verify|export`: the CoreML model manager's command line.

A thin layer: parse, call `engines.cohere.coreml`'s `pull` / `models` / `export`, print.
Errors are DictatedError subclasses, mapped to messages and exit codes by `cli.main`.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    """Add the `models` command (with its subcommands) to the main parser's subparsers.
    Nothing of the model manager is imported here: every `dictated` command builds this parser,
    and `dictated ptt press` from a key binding must start fast."""
    models = subparsers.add_parser("models", help="download, list, verify or export CoreML models")
    sub = models.add_subparsers(dest="models_command", metavar="SUBCOMMAND", required=True)

    pull = sub.add_parser("pull", help="download a published CoreML pair from Hugging Face")
    pull.add_argument(
        "--variant",
        help="which published pair (default: the measured best); an unknown name lists them all",
    )
    pull.add_argument("--revision", help="pin a repo revision (commit sha, tag or branch)")
    pull.add_argument(
        "--dest",
        type=Path,
        help="target directory (default: <data dir>/models/cohere-coreml/VARIANT)",
    )
    _log_level(pull)
    pull.set_defaults(func=cmd_pull)

    lst = sub.add_parser("list", help="list installed CoreML model directories")
    lst.add_argument(
        "--dir", type=Path, help="where to look (default: <data dir>/models/cohere-coreml)"
    )
    lst.set_defaults(func=cmd_list)

    ver = sub.add_parser(
        "verify", help="check a model directory's files (present, sizes, optionally sha256)"
    )
    ver.add_argument(
        "path", nargs="?", help="model directory or variant name (default: the engine's default)"
    )
    ver.add_argument(
        "--hashes", action="store_true", help="also compare sha256 (slow for GB-sized encoders)"
    )
    _log_level(ver, "warning")
    ver.set_defaults(func=cmd_verify)

    exp = sub.add_parser(
        "export", help="convert the PyTorch checkpoint to CoreML packages (any OS)"
    )
    exp.add_argument(
        "--model",
        required=True,
        help="checkpoint directory or hub repo (CohereLabs/cohere-transcribe-03-2026)",
    )
    exp.add_argument(
        "--out",
        type=Path,
        help="output directory (default: <data dir>/models/cohere-coreml/export-PRECISION)",
    )
    exp.add_argument(
        "--precision",
        choices=["fp16", "int8"],
        default="fp16",
        help="weight precision (default fp16)",
    )
    exp.add_argument(
        "--buckets", default="5,10,20,35", help="encoder lengths in seconds (default 5,10,20,35)"
    )
    exp.add_argument(
        "--cache-external", action="store_true", help="also export the cache-external (v2) decoder"
    )
    exp.add_argument(
        "--no-stateful",
        action="store_true",
        help="skip the stateful decoder (needs --cache-external)",
    )
    exp.add_argument(
        "--max-positions", type=int, default=256, help="decoder KV positions (default 256)"
    )
    exp.add_argument("--revision", help="hub revision of the checkpoint")
    exp.add_argument("--force", action="store_true", help="replace an existing export in --out")
    exp.add_argument(
        "--keep-traced", action="store_true", help="keep the TorchScript modules (for tests)"
    )
    _log_level(exp)
    exp.set_defaults(func=cmd_export)


def _log_level(parser: argparse.ArgumentParser, default: str = "info") -> None:
    parser.add_argument(
        "--log-level", default=default, help=f"debug, info, warning, error (default {default})"
    )


def _setup_logging(args: argparse.Namespace) -> None:
    import logging

    from .logs import setup_logging

    setup_logging(getattr(args, "log_level", "info"))
    # coremltools warns at import about its untested torch version and, off macOS, about its
    # missing native runtime; neither matters for these commands
    logging.getLogger("coremltools").setLevel(logging.ERROR)


def cmd_pull(args: argparse.Namespace) -> int:
    from .engines.cohere.coreml.pull import DEFAULT_VARIANT, pull

    _setup_logging(args)
    args.variant = args.variant or DEFAULT_VARIANT
    dest = pull(args.variant, revision=args.revision, dest=args.dest)
    print(f"{args.variant} ready in {dest}")
    print(
        "run it with: dictated run --engine cohere-coreml"
        + ("" if args.dest is None else f" --model {dest}")
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from .engines.cohere.coreml.engine import resolve_model_dir
    from .engines.cohere.coreml.models import installed_models, models_root
    from .errors import ModelError

    _setup_logging(args)
    root = args.dir or models_root()
    found = installed_models(root)
    if not found:
        print(f"no CoreML models in {root}; run `dictated models pull` or `dictated models export`")
        return 0
    try:
        default = resolve_model_dir(None) if args.dir is None else None
    except ModelError:
        default = None
    rows = [("", "DIRECTORY", "SOURCE", "ENCODER BUCKETS", "DECODER", "SIZE")]
    for path in found:
        rows.append(_describe(path, default))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if default is not None:
        print("* = what `--engine cohere-coreml` uses without --model")
    return 0


def _describe(path: Path, default: Path | None) -> tuple[str, ...]:
    from .engines.cohere.coreml.models import find_layout, read_manifest
    from .engines.cohere.coreml.signature import weight_precision
    from .errors import DictatedError

    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    recorded = read_manifest(path)
    source = (recorded[1].get("source") or {}) if recorded else {}
    origin = (
        f"pull {source.get('variant')}"
        if source.get("kind") == "pull"
        else f"export {recorded[1].get('precision') if recorded else ''}"
    )
    try:
        layout = find_layout(path)
    except DictatedError as exc:
        return (
            "*" if path == default else "",
            str(path),
            origin,
            "BROKEN",
            str(exc)[:60],
            f"{size / 1e9:.2f} GB",
        )
    buckets = ",".join(f"{b.seconds:g}s" for b in layout.encoders)
    decoder = f"{layout.flavour} {weight_precision(layout.decoder_signature)}"
    return (
        "*" if path == default else "",
        str(path),
        origin,
        buckets,
        decoder,
        f"{size / 1e9:.2f} GB",
    )


def cmd_verify(args: argparse.Namespace) -> int:
    from .engines.cohere.coreml.engine import resolve_model_dir
    from .engines.cohere.coreml.models import verify

    _setup_logging(args)
    root = resolve_model_dir(args.path)
    report = verify(root, hashes=args.hashes)
    checked = (
        "sizes and sha256" if report.hashed else "sizes" if report.manifest else "package structure"
    )
    print(f"{root}: OK ({report.files_checked} recorded files, {checked} checked)")
    layout = report.layout
    print(f"  encoders: {', '.join(f'{b.path.name} ({b.seconds:g} s)' for b in layout.encoders)}")
    print(f"  decoder:  {layout.decoder.name} ({layout.flavour})")
    print(f"  vocab:    {layout.vocab.name}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .engines.cohere.coreml.export import ExportOptions, export_model, parse_buckets
    from .engines.cohere.coreml.models import models_root

    _setup_logging(args)
    out = args.out or models_root() / f"export-{args.precision}"
    options = ExportOptions(
        model=args.model,
        out=out,
        precision=args.precision,
        buckets=parse_buckets(args.buckets),
        max_positions=args.max_positions,
        stateful=not args.no_stateful,
        cache_external=args.cache_external,
        revision=args.revision,
        keep_traced=args.keep_traced,
        overwrite=args.force,
    )
    result = export_model(options)
    for name, size in result.package_bytes.items():
        print(f"  {name}: {size / 1e6:.1f} MB")
    print(f"exported to {result.out} in {sum(result.stage_seconds.values()):.0f} s")
    print(f"run it with: dictated run --engine cohere-coreml --model {result.out}")
    return 0
