"""Install hints name a command that works: dictated is not on an index, so not `dictated[torch]`."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from dictated import install_hint
from dictated.engines.base import EngineOptions
from dictated.engines.cohere.engine import CohereTorchEngine
from dictated.install_hint import pip_install_extra

REPO = Path(__file__).resolve().parent.parent


def test_from_this_checkout_the_hint_installs_the_clone_editable_into_this_python():
    hint = pip_install_extra("torch")
    assert shlex.split(hint) == [sys.executable, "-m", "pip", "install", "-e", f"{REPO}[torch]"]


@pytest.mark.parametrize(
    ("direct", "expected"),
    [
        ({}, ["dictated[torch]"]),  # from an index: the only case where the name works
        ({"url": "file:///src/dictated", "dir_info": {}}, ["/src/dictated[torch]"]),
        (
            {"url": "file:///src/my%20clone", "dir_info": {"editable": True}},
            ["-e", "/src/my clone[torch]"],
        ),
        (
            {"url": "file:///w/dictated-0.1.0-py3-none-any.whl", "archive_info": {}},
            ["/w/dictated-0.1.0-py3-none-any.whl[torch]"],
        ),
        (
            {"url": "https://example.org/d.git", "vcs_info": {"vcs": "git", "commit_id": "ab"}},
            ["dictated[torch] @ git+https://example.org/d.git"],
        ),
    ],
)
def test_an_installed_copy_names_the_source_pip_recorded(direct, expected):
    """PEP 610's direct_url.json, as pip writes it for each kind of install."""

    assert shlex.split(install_hint._requirement("torch", direct)) == expected


def test_a_copy_in_site_packages_is_not_taken_for_a_checkout(tmp_path):

    assert install_hint._is_our_checkout(REPO)
    assert not install_hint._is_our_checkout(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "other"\n')
    assert not install_hint._is_our_checkout(tmp_path)


def test_the_engine_messages_use_it(monkeypatch):
    """What `--engine auto` and doctor show when torch is missing."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    reason = CohereTorchEngine.unavailable_reason(EngineOptions())
    assert reason is not None and pip_install_extra("torch") in reason


def test_no_message_or_doc_suggests_the_index_name():
    """`pip install 'dictated[...]'` fails from a clone; nothing may suggest it again."""
    roots = [REPO / "daemon", REPO / "clients", REPO / "docs", REPO / "README.md"]
    files = [p for r in roots for p in ([r] if r.is_file() else r.rglob("*")) if p.is_file()]
    offenders = []
    for path in files:
        if path.suffix not in (".py", ".md", ".lua", ".el") or path.name == "install_hint.py":
            continue
        if "pip install 'dictated[" in path.read_text(encoding="utf-8", errors="replace"):
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


@pytest.mark.slow
def test_pip_accepts_the_hint(tmp_path):
    """pip resolves the printed requirement (dry run, offline: only this checkout is read)."""
    args = shlex.split(pip_install_extra("torch"))
    done = subprocess.run(
        [*args, "--dry-run", "--no-deps", "--no-build-isolation", "--no-index", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
