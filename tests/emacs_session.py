"""A real Emacs (`--fg-daemon`, the command loop users run) with the package on its load-path.

The test loads dictated.el the way a user's init file does (`load-path` + `require`) and asks
the running Emacs questions with `emacsclient --eval`; answers come back as JSON in a file,
which avoids parsing Lisp printed syntax.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE_DIR = REPO / "clients" / "emacs"


def require_emacs() -> str:
    exe = shutil.which("emacs")
    if exe is None or shutil.which("emacsclient") is None:
        pytest.skip("needs Emacs and emacsclient (apt-get install emacs-nox)")
    return exe


def elisp_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is an Emacs Lisp string literal for our paths


class Emacs:
    def __init__(self, env: dict[str, str], path: str | None = None):
        self.exe = require_emacs()
        self.client = shutil.which("emacsclient")
        self.dir = Path(tempfile.mkdtemp(prefix="em-", dir="/tmp"))  # short: a socket path
        self.socket = str(self.dir / "server")
        self.answer = self.dir / "answer.json"
        bin_dir = str(Path(sys.executable).parent)  # dictated-tail and dictated of this checkout
        self.env = {
            **env,
            "HOME": str(self.dir),
            "PATH": path if path is not None else f"{bin_dir}:{env['PATH']}",
        }
        self.proc = subprocess.Popen(
            [
                self.exe,
                "-Q",
                f"--fg-daemon={self.socket}",
                "--eval",
                f"(add-to-list 'load-path {elisp_string(str(PACKAGE_DIR))})",
                "--eval",
                "(require 'dictated)",
            ],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "emacs.log", "wb"),  # noqa: SIM115  (a daemon's messages go here)
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.eval("(featurep 'dictated)") is True:
                    break
            except RuntimeError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("emacs did not start")
            time.sleep(0.1)

    def eval(self, form: str) -> object:
        """Evaluate FORM inside Emacs; its value, as JSON (nil is False)."""
        wrapped = (
            f"(let ((value {form})) (with-temp-file {elisp_string(str(self.answer))} "
            "(set-buffer-file-coding-system 'utf-8) "
            '(insert (if (eq value nil) "false" (if (eq value t) "true" (json-encode value))))) t)'
        )
        done = subprocess.run(
            [self.client, "-s", self.socket, "--eval", wrapped],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=20,
        )
        if done.returncode != 0:
            raise RuntimeError(f"emacsclient failed: {done.stderr}")
        return json.loads(self.answer.read_text(encoding="utf-8"))

    def call(self, command: str) -> None:
        """Run an interactive command as M-x does (errors become messages)."""
        self.eval(
            f"(condition-case err (progn (call-interactively #'{command}) nil) "
            '(error (message "%s" (error-message-string err)) nil))'
        )

    def messages(self) -> str:
        return self.eval('(with-current-buffer "*Messages*" (buffer-string))')

    def wait_for(self, predicate, what: str, timeout_s: float = 60):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.2)
        raise TimeoutError(f"emacs: {what}; messages: {self.messages()!r}")

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):  # then it is killed
                subprocess.run(
                    [self.client, "-s", self.socket, "--eval", "(kill-emacs 0)"],
                    env=self.env,
                    capture_output=True,
                    timeout=10,
                )
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
