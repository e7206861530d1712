"""Where a Cohere Transcribe PyTorch checkpoint comes from: a local directory or the gated hub repo.

Torch-free on purpose: `--engine auto` asks `checkpoint_problem` / `cached_checkpoint` whether a
model is already here without importing torch or downloading anything.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ...errors import ModelError

log = logging.getLogger(__name__)

DEFAULT_REPO = "CohereLabs/cohere-transcribe-03-2026"
# What the runtime reads; the repo's other files (e.g. NeMo archives) are not downloaded.
ALLOW_PATTERNS = ("*.json", "*.safetensors", "tokenizer.model")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "vocab.json")


def checkpoint_problem(model_dir: Path) -> str | None:
    """None if `model_dir` looks like a loadable checkpoint, else what is missing (naming the file)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return f"model directory {model_dir} does not exist"
    if not (model_dir / "config.json").is_file():
        return f"{model_dir / 'config.json'} is missing (expected a transformers save_pretrained directory)"
    if not any((model_dir / name).is_file() for name in WEIGHT_FILES):
        return f"{model_dir} has no weights: expected {' or '.join(WEIGHT_FILES)}"
    if not any((model_dir / name).is_file() for name in TOKENIZER_FILES):
        return f"{model_dir / 'tokenizer.model'} is missing (or tokenizer.json: the tokenizer)"
    return None


def cached_checkpoint(repo_id: str = DEFAULT_REPO, cache_dir: Path | None = None) -> Path | None:
    """The snapshot directory if the hub checkpoint is already fully in the local HF cache."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(
        repo_id, "config.json", cache_dir=str(cache_dir) if cache_dir else None
    )
    if not isinstance(found, str):
        return None
    snapshot = Path(found).parent
    return snapshot if checkpoint_problem(snapshot) is None else None


def resolve_checkpoint(
    model: str | None, cache_dir: Path | None = None, *, download: bool = True
) -> Path:
    """A local checkpoint directory for `model`: a path, a hub repo id, or None for the default repo.

    A path that does not hold a checkpoint is a ModelError naming the missing file. A repo id is
    taken from the HF cache, else downloaded (gated repos need `hf auth login`).
    """
    if model is not None:
        path = Path(model).expanduser()
        if path.exists() or model.startswith((".", "/", "~")) or model.count("/") != 1:
            problem = checkpoint_problem(path)
            if problem:
                raise ModelError(f"cohere-torch: {problem}")
            return path
    repo_id = model or DEFAULT_REPO
    cached = cached_checkpoint(repo_id, cache_dir)
    if cached is not None:
        return cached
    if not download:
        raise ModelError(f"{repo_id} is not in the local Hugging Face cache")
    from ...downloads import download_snapshot

    log.info("downloading %s from the Hugging Face hub", repo_id)
    path = download_snapshot(repo_id, allow_patterns=ALLOW_PATTERNS, cache_dir=cache_dir)
    problem = checkpoint_problem(path)
    if problem:
        raise ModelError(f"the download of {repo_id} is incomplete: {problem}")
    return path
