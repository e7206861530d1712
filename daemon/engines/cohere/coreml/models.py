"""CoreML model directories: where they live, what is in them, and whether they are intact.

A model directory holds one or more encoder packages (our export: one per length bucket; the
published repo: one 35 s encoder), one decoder to use, and a vocabulary (`tokenizer.model` and/or
`vocab.json`). Layouts differ between our export and the published repo (whose layout has moved
over time), so the directory is *listed* and each package's role read from its name and checked
against its signature, never assumed. A recorded manifest (`manifest.json` from `models export`,
`dictated-pull.json` from `models pull`) lists every file with its size and sha256, so `verify`
can name exactly which file is missing or damaged and say how to fix it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dictated import paths
from dictated.errors import ModelError

from . import contract
from .signature import ModelSignature, decoder_flavour, read_signature

log = logging.getLogger(__name__)

EXPORT_MANIFEST = "manifest.json"  # written by `dictated models export`
PULL_MANIFEST = "dictated-pull.json"  # written by `dictated models pull`
MANIFEST_FORMAT = "dictated-coreml"
PACKAGE_SUFFIXES = (".mlpackage", ".mlmodelc")
VOCAB_FILES = ("tokenizer.model", "vocab.json")
# When a directory holds several decoders and no manifest picks one: the pair that measured best
# upstream first (cache-external v2), then the stateful State API decoder, then v1.
DECODER_PREFERENCE = (
    contract.DecoderFlavour.CACHE_EXTERNAL_V2,
    contract.DecoderFlavour.STATEFUL,
    contract.DecoderFlavour.CACHE_EXTERNAL_V1,
)
_HASH_CHUNK = 8 << 20


def models_root() -> Path:
    """`<user data dir>/models/cohere-coreml`: where `models pull` and `models export` put models."""
    return paths.data_dir() / "models" / "cohere-coreml"


# -- file records ---------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def package_files(path: Path) -> list[Path]:
    """Every regular file of a package directory (or the file itself), sorted."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file())


def file_records(
    root: Path, items: Iterable[Path], *, hashes: bool = True
) -> dict[str, dict[str, object]]:
    """{relative path: {"size", "sha256"}} for every file under the given packages/files."""
    records: dict[str, dict[str, object]] = {}
    for item in items:
        for file in package_files(item):
            rel = file.relative_to(root).as_posix()
            record: dict[str, object] = {"size": file.stat().st_size}
            if hashes:
                record["sha256"] = sha256_file(file)
            records[rel] = record
    return records


def read_manifest(root: Path) -> tuple[Path, dict] | None:
    """The recorded manifest of a model directory, if any."""
    for name in (EXPORT_MANIFEST, PULL_MANIFEST):
        path = root / name
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ModelError(
                    f"{path} is not valid JSON ({exc}); {_fix_hint(root, None)}"
                ) from exc
            if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
                raise ModelError(
                    f"{path} is not a dictated model manifest; {_fix_hint(root, None)}"
                )
            return path, data
    return None


def write_manifest(path: Path, data: Mapping[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps({"format": MANIFEST_FORMAT, **data}, indent=2, sort_keys=False) + "\n",
        encoding="utf-8",
    )
    tmp.replace(path)


def _fix_hint(root: Path, manifest: Mapping[str, object] | None) -> str:
    source = (manifest or {}).get("source")
    if isinstance(source, Mapping) and source.get("kind") == "pull":
        variant = source.get("variant", "")
        return f"download it again with `dictated models pull --variant {variant} --dest {root}`"
    if isinstance(source, Mapping) and source.get("kind") == "export":
        return f"export it again with `dictated models export --model {source.get('model')} --out {root}`"
    return (
        "download it again with `dictated models pull` or export it with `dictated models export`"
    )


# -- layout ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncoderBucket:
    path: Path
    feature_frames: int  # input frames (100 per second)
    encoder_frames: int  # output frames (8x fewer)
    signature: ModelSignature

    @property
    def seconds(self) -> float:
        return self.feature_frames / 100.0


@dataclass(frozen=True)
class ModelLayout:
    root: Path
    encoders: tuple[EncoderBucket, ...]  # ascending feature_frames
    decoder: Path
    decoder_signature: ModelSignature
    vocab: Path  # tokenizer.model preferred, else vocab.json
    manifest: Path | None

    @property
    def flavour(self) -> contract.DecoderFlavour:
        return decoder_flavour(self.decoder_signature)


def _visible(path: Path, root: Path) -> bool:
    """Not under a hidden folder (huggingface_hub keeps per-file metadata in `.cache/` folders
    named like the packages) and not inside another package."""
    parts = path.relative_to(root).parts
    return not any(part.startswith(".") for part in parts) and not any(
        Path(part).suffix in PACKAGE_SUFFIXES for part in parts[:-1]
    )


def find_packages(root: Path) -> list[Path]:
    """CoreML packages under `root` (any depth), preferring the .mlpackage of a same-named pair."""
    found = sorted(p for suffix in PACKAGE_SUFFIXES for p in root.rglob(f"*{suffix}") if p.is_dir())
    found = [p for p in found if _visible(p, root)]
    stems = {p.with_suffix("") for p in found if p.suffix == ".mlpackage"}
    return [p for p in found if p.suffix == ".mlpackage" or p.with_suffix("") not in stems]


def find_layout(root: Path) -> ModelLayout:
    """Discover the encoder bucket(s), the decoder and the vocabulary in `root`."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ModelError(f"model directory {root} does not exist; {_fix_hint(root, None)}")
    recorded = read_manifest(root)
    manifest = recorded[1] if recorded else None
    packages = find_packages(root)
    encoders = [p for p in packages if "encoder" in p.name.lower()]
    decoders = [p for p in packages if "decoder" in p.name.lower()]
    if not encoders:
        raise ModelError(
            f"no encoder package (*encoder*.mlpackage or .mlmodelc) in {root}; {_fix_hint(root, manifest)}"
        )
    if not decoders:
        raise ModelError(
            f"no decoder package (*decoder*.mlpackage or .mlmodelc) in {root}; {_fix_hint(root, manifest)}"
        )

    buckets: dict[int, EncoderBucket] = {}
    for path in encoders:
        sig = read_signature(path)
        features = sig.input(contract.ENC_FEATURES).shape
        hidden = sig.outputs.get(contract.ENC_HIDDEN)
        if hidden is None or len(features) != 3 or len(hidden.shape) != 3:
            raise ModelError(
                f"{path} does not have the encoder contract ({contract.ENC_FEATURES} -> {contract.ENC_HIDDEN})"
            )
        bucket = EncoderBucket(path, features[2], hidden.shape[1], sig)
        if bucket.feature_frames in buckets:
            other = buckets[bucket.feature_frames].path
            raise ModelError(
                f"{root} holds two encoders for {bucket.seconds:g} s ({other} and {path}); "
                "point --model at the folder of the pair you want"
            )
        buckets[bucket.feature_frames] = bucket

    decoder = _choose_decoder(root, decoders, manifest)
    vocab = _find_vocab(root, [b.path for b in buckets.values()] + [decoder])
    if vocab is None:
        raise ModelError(f"no tokenizer.model or vocab.json in {root}; {_fix_hint(root, manifest)}")
    return ModelLayout(
        root=root,
        encoders=tuple(sorted(buckets.values(), key=lambda b: b.feature_frames)),
        decoder=decoder,
        decoder_signature=read_signature(decoder),
        vocab=vocab,
        manifest=recorded[0] if recorded else None,
    )


def _choose_decoder(root: Path, decoders: list[Path], manifest: Mapping | None) -> Path:
    if manifest and manifest.get("default_decoder"):
        chosen = root / str(manifest["default_decoder"])
        if chosen in decoders:
            return chosen
    if len(decoders) == 1:
        return decoders[0]
    by_flavour: dict[contract.DecoderFlavour, list[Path]] = {}
    for path in decoders:
        by_flavour.setdefault(decoder_flavour(read_signature(path)), []).append(path)
    for flavour in DECODER_PREFERENCE:
        if len(by_flavour.get(flavour, [])) == 1:
            return by_flavour[flavour][0]
        if flavour in by_flavour:
            names = ", ".join(str(p) for p in by_flavour[flavour])
            raise ModelError(
                f"{root} holds several {flavour} decoders ({names}); point --model at one model's folder"
            )
    raise ModelError(f"no usable decoder in {root}")  # pragma: no cover - flavours are exhaustive


def _find_vocab(root: Path, packages: list[Path]) -> Path | None:
    """tokenizer.model or vocab.json next to the packages, else in `root` or below, else in the
    folder above (the published repo keeps vocab.json at its root, above f16/ and q8/)."""
    folders = [p.parent for p in packages] + [root]
    for name in VOCAB_FILES:
        for folder in folders:
            if (folder / name).is_file():
                return folder / name
    for name in VOCAB_FILES:
        hits = sorted(
            (p for p in root.rglob(name) if _visible(p, root)), key=lambda p: len(p.parts)
        )
        if hits:
            return hits[0]
    for name in VOCAB_FILES:
        if (root.parent / name).is_file():
            return root.parent / name
    return None


# -- verification ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyReport:
    layout: ModelLayout
    files_checked: int
    hashed: bool  # sha256 compared, not just sizes
    manifest: Path | None


def verify(root: Path, *, hashes: bool = False) -> VerifyReport:
    """Check every expected file is present and intact; ModelError naming each bad file and the fix.

    Without a recorded manifest only the packages' own structure is checked (Manifest.json and the
    items it lists, the spec, the compiled model's files). `hashes` also compares sha256 (slow for
    multi-GB encoders: seconds per GB).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ModelError(f"model directory {root} does not exist; {_fix_hint(root, None)}")
    recorded = read_manifest(root)
    manifest = recorded[1] if recorded else None
    problems: list[str] = []
    checked = 0
    if manifest:
        files = manifest.get("files") or {}
        for rel, record in sorted(files.items()):
            checked += 1
            problems.extend(_check_record(root / rel, record, hashes))
    for package in find_packages(root):
        problems.extend(_check_package(package))
    if not problems:
        try:
            layout = find_layout(root)
        except ModelError as exc:
            problems.append(str(exc))
        else:
            problems.extend(_check_vocab(layout.vocab))
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ModelError(
            f"{root} failed verification:\n  {shown}{more}\nFix: {_fix_hint(root, manifest)}"
        )
    return VerifyReport(
        layout=layout,
        files_checked=checked,
        hashed=hashes and manifest is not None,
        manifest=recorded[0] if recorded else None,
    )


def _check_record(path: Path, record: Mapping[str, object], hashes: bool) -> list[str]:
    if not path.is_file():
        return [f"{path} is missing"]
    size = path.stat().st_size
    if "size" in record and size != record["size"]:
        return [f"{path} has {size} bytes, expected {record['size']} (incomplete or damaged)"]
    if hashes and record.get("sha256") and sha256_file(path) != record["sha256"]:
        return [f"{path} has the wrong sha256 (damaged)"]
    return []


def _check_package(path: Path) -> list[str]:
    if path.suffix == ".mlmodelc":
        required = ["model.mil", "coremldata.bin", "metadata.json"]
        problems = [f"{path / name} is missing" for name in required if not (path / name).is_file()]
        mil = path / "model.mil"
        if (
            mil.is_file()
            and "weights/weight.bin" in mil.read_text(errors="replace")
            and not (path / "weights" / "weight.bin").is_file()
        ):
            problems.append(f"{path / 'weights' / 'weight.bin'} is missing")
        return problems
    manifest = path / "Manifest.json"
    if not manifest.is_file():
        return [f"{manifest} is missing"]
    try:
        entries = json.loads(manifest.read_text(encoding="utf-8"))["itemInfoEntries"].values()
        items = [path / "Data" / str(entry["path"]) for entry in entries]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return [f"{manifest} is damaged ({exc})"]
    problems = [f"{item} is missing" for item in items if not item.exists()]
    if not problems:
        try:
            read_signature(path)
        except ModelError as exc:
            problems.append(str(exc))
    return problems


def _check_vocab(path: Path) -> list[str]:
    try:
        if path.name == "vocab.json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not data:
                return [f"{path} is not a JSON object {{id: piece}}"]
        else:
            import sentencepiece as spm

            spm.SentencePieceProcessor(model_file=str(path))
    except (OSError, ValueError, RuntimeError) as exc:
        return [f"{path} cannot be read ({exc})"]
    return []


def installed_models(root: Path | None = None) -> list[Path]:
    """Model directories under `root` (default `models_root()`): each holding a recorded manifest."""
    root = Path(root) if root else models_root()
    if not root.is_dir():
        return []
    found = {m.parent for name in (EXPORT_MANIFEST, PULL_MANIFEST) for m in root.glob(f"*/{name}")}
    return sorted(found)
