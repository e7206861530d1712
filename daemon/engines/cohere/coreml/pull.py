"""`dictated models pull`: download a published CoreML pair from FluidInference's Hugging Face repo.

The repo's layout has moved over time (f16/ and q8/ folders, .mlpackage and/or compiled .mlmodelc,
stateful and cache-external decoders, vocab.json at various depths), so the repo is *listed* at
the pinned revision and the files chosen from the listing. huggingface_hub provides resume and
progress bars; afterwards every file's size and sha256 are checked against the hub's record (LFS
files) and written to `dictated-pull.json`, which `models verify` checks later.

Default variant: FluidInference measured their stateful decoder at 58 % English WER against 10.6 %
for the cache-external decoder with the same host pipeline, and FluidAudio ships the int8 encoder
(q8/, needs macOS 15) with the cache-external v2 decoder (FP32, fixed attention mask, runs on the
Neural Engine); FluidAudio falls back to v1 (FP16, growing mask, CPU/GPU) when v2 is absent. So
"int8-encoder+fp16-decoder" (named after the upstream recommendation of an fp16-or-better decoder)
takes the q8 encoder with v2 when the repo has it, v1 at older revisions without v2, and the f16
stateful decoder only when the repo has no cache-external decoder at all.
"""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dictated.errors import ConfigError, ModelError

from .models import PULL_MANIFEST, file_records, models_root, verify, write_manifest

log = logging.getLogger(__name__)

REPO_ID = "FluidInference/cohere-transcribe-03-2026-coreml"
PACKAGE_RE = re.compile(r"^(.*?[^/]+\.(?:mlpackage|mlmodelc))(?:/|$)")
# decoder kinds by file name, best first
STATEFUL, EXTERNAL_V2, EXTERNAL_V1 = "stateful", "cache_external_v2", "cache_external"


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    encoder_folder: str  # repo folder whose encoder to take ("q8" or "f16")
    decoders: tuple[tuple[str, str], ...]  # (folder, decoder kind) in order of preference


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            "int8-encoder+fp16-decoder",
            "int8 encoder + the cache-external decoder FluidAudio ships (v2, FP32; v1, FP16, at "
            "older revisions), measured best; macOS 15; ~2.2-2.5 GB",
            "q8",
            # v2 wherever the repo keeps it (f16/ first), then v1 likewise, then the stateful one
            (
                *((folder, EXTERNAL_V2) for folder in ("f16", "q8", "")),
                *((folder, EXTERNAL_V1) for folder in ("f16", "q8", "")),
                ("f16", STATEFUL),
            ),
        ),
        Variant(
            "f16", "fp16 encoder + fp16 stateful decoder; ~3.9 GB", "f16", (("f16", STATEFUL),)
        ),
        Variant(
            "q8",
            "int8 encoder + int8 stateful decoder (EOS bias 4 applies); ~2 GB",
            "q8",
            (("q8", STATEFUL),),
        ),
    )
}
DEFAULT_VARIANT = "int8-encoder+fp16-decoder"


@dataclass(frozen=True)
class Selection:
    encoder: str  # package path in the repo
    decoder: str
    vocab: tuple[str, ...]  # vocab.json / tokenizer.model paths
    files: tuple[str, ...]  # every repo file to download


def _packages(files: Iterable[str]) -> dict[str, list[str]]:
    """Repo package path -> its files."""
    found: dict[str, list[str]] = {}
    for f in files:
        m = PACKAGE_RE.match(f)
        if m:
            found.setdefault(m.group(1), []).append(f)
    return found


def _kind(package: str) -> str | None:
    name = posixpath.basename(package).lower()
    if "decoder" not in name:
        return None
    for kind in (EXTERNAL_V2, EXTERNAL_V1, STATEFUL):
        if kind in name:
            return kind
    return None


def _pick(candidates: Sequence[str]) -> str | None:
    """Prefer the compiled .mlmodelc of a same-named pair: it loads in about a second, where the
    .mlpackage is compiled on first load (minutes) and kept a second time in the compile cache.
    Both are readable on any OS (`signature`)."""
    ordered = sorted(candidates, key=lambda p: (not p.endswith(".mlmodelc"), p))
    return ordered[0] if ordered else None


def select_files(repo_files: Sequence[str], variant: Variant) -> Selection:
    """Choose the encoder, decoder and vocabulary of `variant` from a repo listing."""
    packages = _packages(repo_files)
    folder = posixpath.dirname

    encoders = [p for p in packages if "encoder" in posixpath.basename(p).lower()]
    encoder = _pick([p for p in encoders if folder(p) == variant.encoder_folder])
    if encoder is None:
        raise ModelError(
            f"{REPO_ID} has no encoder in {variant.encoder_folder}/ at this revision (encoders: "
            f"{', '.join(sorted(encoders)) or 'none'}); try another --variant or --revision"
        )
    decoder = None
    for wanted_folder, kind in variant.decoders:
        decoder = _pick([p for p in packages if _kind(p) == kind and folder(p) == wanted_folder])
        if decoder:
            break
    if decoder is None:
        decoders = sorted(p for p in packages if _kind(p))
        raise ModelError(
            f"{REPO_ID} has none of the decoders variant {variant.name} needs at this revision "
            f"(decoders: {', '.join(decoders) or 'none'}); try another --variant or --revision"
        )
    vocab = _vocab(repo_files, [folder(encoder), folder(decoder), ""])
    if not vocab:
        raise ModelError(f"{REPO_ID} has no vocab.json or tokenizer.model at this revision")
    files = tuple(sorted(packages[encoder] + packages[decoder] + list(vocab)))
    return Selection(encoder=encoder, decoder=decoder, vocab=tuple(vocab), files=files)


def _vocab(repo_files: Sequence[str], folders: list[str]) -> list[str]:
    """The vocabulary next to the chosen packages, else the closest one to the repo root."""
    for folder in folders:
        hits = [
            posixpath.join(folder, n) if folder else n for n in ("tokenizer.model", "vocab.json")
        ]
        hits = [h for h in hits if h in repo_files]
        if hits:
            return hits
    loose = sorted(
        (f for f in repo_files if posixpath.basename(f) in ("vocab.json", "tokenizer.model")),
        key=lambda f: f.count("/"),
    )
    return loose[:1]


def _remote_records(
    repo_id: str, revision: str | None, files: Sequence[str]
) -> tuple[str | None, dict[str, dict]]:
    """(commit sha, {path: {size, sha256 (LFS files only)}}) as the hub records them."""
    from huggingface_hub import HfApi
    from huggingface_hub import errors as hf_errors

    api = HfApi()
    try:
        commit = api.model_info(repo_id, revision=revision).sha
        infos = api.get_paths_info(repo_id, list(files), revision=revision)
    except hf_errors.RevisionNotFoundError as exc:
        raise ModelError(f"{repo_id} has no revision {revision!r}") from exc
    except Exception as exc:  # HTTP status errors, and the HTTP client's own connection errors
        raise ModelError(
            f"could not read file details of {repo_id}: {exc}. Check your network connection"
        ) from exc
    records = {}
    for info in infos:
        record: dict[str, object] = {}
        if getattr(info, "size", None) is not None:
            record["size"] = int(info.size)
        lfs = getattr(info, "lfs", None)
        if lfs is not None and getattr(lfs, "sha256", None):
            record["sha256"] = lfs.sha256
        records[info.path] = record
    return commit, records


def _remove_stale(dest: Path, keep: Sequence[str]) -> None:
    """Delete what an earlier pull into `dest` downloaded and this one does not (say, an old
    .mlpackage that would otherwise win over the new .mlmodelc); nothing else is touched."""
    import json
    import shutil

    manifest = dest / PULL_MANIFEST
    if not manifest.is_file():
        return
    try:
        previous = json.loads(manifest.read_text(encoding="utf-8")).get("files", {})
    except (ValueError, OSError):
        return
    kept_packages = {m.group(1) for f in keep if (m := PACKAGE_RE.match(f))}
    for name in previous:
        match = PACKAGE_RE.match(name)
        top = match.group(1) if match else name
        if name in keep or top in kept_packages:
            continue
        target = dest / top
        log.info("removing %s from an earlier pull", target)
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)


def pull(
    variant: str = DEFAULT_VARIANT, revision: str | None = None, dest: Path | None = None
) -> Path:
    """Download `variant` into `dest` (default `<data dir>/models/cohere-coreml/<variant>`), check
    every file against the hub's sizes and hashes, record them, and return `dest`."""
    from dictated import downloads

    if variant not in VARIANTS:
        raise ConfigError(f"variant: {variant!r} is not one of {', '.join(VARIANTS)}")
    spec = VARIANTS[variant]
    dest = Path(dest).expanduser() if dest else models_root() / variant
    log.info("listing %s%s", REPO_ID, f" at {revision}" if revision else "")
    listing = downloads.list_repo_files(REPO_ID, revision=revision)
    selection = select_files(listing, spec)
    log.info(
        "variant %s: encoder %s, decoder %s, vocabulary %s",
        variant,
        selection.encoder,
        selection.decoder,
        ", ".join(selection.vocab),
    )
    commit, remote = _remote_records(REPO_ID, revision, selection.files)
    dest.mkdir(parents=True, exist_ok=True)
    _remove_stale(dest, selection.files)
    downloads.download_snapshot(
        REPO_ID, revision=commit or revision, allow_patterns=selection.files, local_dir=dest
    )

    records = file_records(dest, [dest / f for f in selection.files])
    problems = []
    for path, expected in remote.items():
        got = records.get(path)
        if got is None:
            problems.append(f"{dest / path} is missing")
        elif "size" in expected and got["size"] != expected["size"]:
            problems.append(
                f"{dest / path} has {got['size']} bytes, the hub has {expected['size']}"
            )
        elif "sha256" in expected and got["sha256"] != expected["sha256"]:
            problems.append(f"{dest / path} does not match the hub's sha256")
    if problems:
        raise ModelError(
            "the download is incomplete or damaged:\n  "
            + "\n  ".join(problems)
            + f"\nDelete those files and run `dictated models pull --variant {variant} --dest {dest}` again"
        )
    write_manifest(
        dest / PULL_MANIFEST,
        {
            "version": 1,
            "source": {
                "kind": "pull",
                "repo": REPO_ID,
                "revision": commit or revision,
                "variant": variant,
            },
            "default_decoder": selection.decoder,
            "files": records,
        },
    )
    verify(dest)
    log.info("%s is ready in %s", variant, dest)
    return dest
