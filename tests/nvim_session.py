"""A real Neovim with the plugin installed as a package, driven over its RPC socket.

The plugin is linked into $XDG_DATA_HOME/nvim/site/pack/*/start/, the way package managers and
users install it, so Neovim loads it by itself; the test talks to it with `nvim --server
--remote-expr`, which evaluates an expression inside the running editor.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PLUGIN = REPO / "clients" / "nvim"


def require_nvim() -> str:
    exe = shutil.which("nvim")
    if exe is None:
        pytest.skip("needs Neovim (apt-get install neovim)")
    return exe


class Nvim:
    def __init__(self, env: dict[str, str], path: str | None = None):
        self.exe = require_nvim()
        site = Path(env["XDG_DATA_HOME"]) / "nvim" / "site" / "pack" / "dictated" / "start"
        site.mkdir(parents=True, exist_ok=True)
        if not (site / "dictated").exists():
            (site / "dictated").symlink_to(PLUGIN)
        self.dir = Path(tempfile.mkdtemp(prefix="nv-", dir="/tmp"))  # short: a socket path
        self.socket = str(self.dir / "sock")
        bin_dir = str(Path(sys.executable).parent)  # dictated-tail and dictated of this checkout
        self.env = {**env, "PATH": path if path is not None else f"{bin_dir}:{env['PATH']}"}
        self.proc = subprocess.Popen(
            [self.exe, "--headless", "--listen", self.socket],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not os.path.exists(self.socket):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("nvim did not start")
            time.sleep(0.05)

    def expr(self, expression: str) -> str:
        done = subprocess.run(
            [self.exe, "--server", self.socket, "--remote-expr", expression],
            env={**self.env, "PATH": os.environ["PATH"]},
            capture_output=True,
            text=True,
            timeout=20,
        )
        if done.returncode != 0:
            raise RuntimeError(f"nvim --remote-expr failed: {done.stderr}")
        return (
            done.stdout or done.stderr
        )  # Neovim 0.7 prints the value on stderr, later ones on stdout

    def lua(self, code: str) -> object:
        """Run Lua inside the editor; returns its value (JSON-encodable)."""
        out = self.expr(f"json_encode(luaeval({json.dumps(code)}))")
        return json.loads(out)

    def command(self, cmd: str) -> None:
        """Type an Ex command as a user would (an error message then lands in :messages)."""
        done = subprocess.run(
            [self.exe, "--server", self.socket, "--remote-send", f"<C-\\><C-N>:{cmd}<CR>"],
            env={**self.env, "PATH": os.environ["PATH"]},
            capture_output=True,
            text=True,
            timeout=20,
        )
        if done.returncode != 0:
            raise RuntimeError(f"nvim --remote-send failed: {done.stderr}")
        self.expr("1")  # returns once the keys have been handled

    def lines(self) -> list[str]:
        return self.lua("vim.api.nvim_buf_get_lines(0, 0, -1, false)")

    def messages(self) -> str:
        return self.expr('execute("messages")')

    def wait_for(self, predicate, what: str, timeout_s: float = 60):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.2)
        raise TimeoutError(f"nvim: {what}; messages: {self.messages()!r}; lines: {self.lines()!r}")

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.expr('execute("qa!")')  # it quits before answering
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
