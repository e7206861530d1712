"""The install command for an optional extra (`[torch]`, `[coreml]`, `[export]`) that works here.

dictated is not on a package index: `pip install 'dictated[torch]'` fails for a user who installed
from a clone. So the hint names where this copy came from: the clone it runs from (an editable
install: this module sits in a tree whose pyproject.toml is ours), else pip's own record of a
non-index install (PEP 610's `direct_url.json`: a directory, a wheel file, a VCS URL), and only
without either `dictated[extra]`. It runs this environment's Python (`…/.venv/bin/python -m pip`),
so the extra lands where the daemon runs, whichever `pip` is first on PATH.
"""

from __future__ import annotations

import json
import shlex
import sys
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlsplit

DIST = "dictated"
#: the tree this module sits in: the clone when run from a checkout (daemon/ -> the clone),
#: site-packages when installed as a copy
_TREE = Path(__file__).resolve().parent.parent


def pip_install_extra(extra: str) -> str:
    """A shell command installing `dictated[extra]` into this environment from where it came from."""
    pip = f"{shlex.quote(sys.executable)} -m pip install"
    if _is_our_checkout(_TREE):
        return f"{pip} {_local(_TREE, extra, editable=True)}"
    return f"{pip} {_requirement(extra, _direct_url())}"


def _is_our_checkout(tree: Path) -> bool:
    """The package runs from a source tree (editable install) whose pyproject.toml is dictated's."""
    try:
        text = (tree / "pyproject.toml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return f'name = "{DIST}"' in text


def _direct_url() -> dict:
    """pip's record of a non-index install (PEP 610), or {} when there is none (an index)."""
    for dist in metadata.distributions(name=DIST):  # a stale egg-info may come first
        text = dist.read_text("direct_url.json")
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = None
        if isinstance(data, dict):
            return data
    return {}


def _requirement(extra: str, direct: dict) -> str:
    """The pip arguments naming `extra` of the source `direct` records ({}: an index)."""
    url = direct.get("url")
    if not isinstance(url, str) or not url:
        return shlex.quote(f"{DIST}[{extra}]")
    vcs = direct.get("vcs_info")
    if isinstance(vcs, dict) and vcs.get("vcs"):
        return shlex.quote(f"{DIST}[{extra}] @ {vcs['vcs']}+{url}")
    parts = urlsplit(url)
    if parts.scheme == "file":
        editable = bool((direct.get("dir_info") or {}).get("editable"))
        return _local(Path(unquote(parts.path)), extra, editable=editable)
    return shlex.quote(f"{DIST}[{extra}] @ {url}")


def _local(path: Path, extra: str, *, editable: bool) -> str:
    """A local clone (`-e` when this copy is editable) or wheel file, with the extra."""
    return ("-e " if editable else "") + shlex.quote(f"{path}[{extra}]")
