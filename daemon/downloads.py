"""Downloads from the Hugging Face hub, with its progress bars and clear errors.

Gated repos (Cohere Transcribe) need an accepted license and a token; those failures become one
ModelError that says what to do, not a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from .errors import ModelError, ModelUnavailable

log = logging.getLogger(__name__)


def download_snapshot(
    repo_id: str,
    *,
    revision: str | None = None,
    allow_patterns: Sequence[str] | None = None,
    cache_dir: Path | None = None,
    local_dir: Path | None = None,
) -> Path:
    """Fetch (or resume) a snapshot of `repo_id`; return its local directory."""
    import huggingface_hub
    from huggingface_hub import errors as hf_errors

    try:
        path = huggingface_hub.snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=list(allow_patterns) if allow_patterns else None,
            cache_dir=str(cache_dir) if cache_dir else None,
            local_dir=str(local_dir) if local_dir else None,
        )
    except hf_errors.GatedRepoError as exc:
        raise ModelError(
            f"{repo_id} is gated: accept its license at https://huggingface.co/{repo_id} and log in "
            "with `hf auth login` (or set HF_TOKEN), then try again"
        ) from exc
    except hf_errors.RepositoryNotFoundError as exc:
        raise ModelError(
            f"{repo_id} was not found on the Hugging Face hub, or it is private and you are not "
            "logged in (`hf auth login` or HF_TOKEN)"
        ) from exc
    except hf_errors.RevisionNotFoundError as exc:
        raise ModelError(f"{repo_id} has no revision {revision!r}") from exc
    except (hf_errors.LocalEntryNotFoundError, hf_errors.HfHubHTTPError, OSError) as exc:
        raise ModelUnavailable(
            f"could not download {repo_id}: {exc}. Check your network connection, or pass a local "
            "model directory with --model"
        ) from exc
    return Path(path)


def list_repo_files(repo_id: str, *, revision: str | None = None) -> list[str]:
    """The files in a hub repo at `revision`, so callers discover layouts instead of assuming them."""
    import huggingface_hub
    from huggingface_hub import errors as hf_errors

    try:
        return list(huggingface_hub.list_repo_files(repo_id, revision=revision))
    except hf_errors.GatedRepoError as exc:
        raise ModelError(
            f"{repo_id} is gated: accept its license and log in (`hf auth login`)"
        ) from exc
    except hf_errors.RepositoryNotFoundError as exc:
        raise ModelError(f"{repo_id} was not found on the Hugging Face hub") from exc
    except Exception as exc:  # HTTP status errors and the hub's HTTP client's own connection errors
        raise ModelUnavailable(
            f"could not list {repo_id}: {exc}. Check your network connection"
        ) from exc
