"""A real X11 session for typing tests: Xvfb, and an xterm whose keyboard input lands in a file.

The xterm runs `cat > FILE` on a terminal in canonical mode, so the kernel's line discipline (not
our code) applies BackSpace (IUTF8: one BackSpace erases one UTF-8 character) and each Return
writes the finished line to FILE: what the test reads back is what the keystrokes produced.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

TOOLS = ("Xvfb", "xterm", "xdotool")


def require_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install xvfb xterm xdotool)")


class XSession:
    def __init__(self, tmp: Path):
        require_tools()
        read_fd, write_fd = os.pipe()
        self.xvfb = subprocess.Popen(
            [
                "Xvfb",
                "-displayfd",
                str(write_fd),
                "-screen",
                "0",
                "1024x768x24",
                "-nolisten",
                "tcp",
            ],
            pass_fds=(write_fd,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(write_fd)
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()  # Xvfb writes the display it chose once it is ready
        if not number:
            raise RuntimeError("Xvfb did not start")
        self.display = f":{number}"
        self.env = {**os.environ, "DISPLAY": self.display, "XDG_SESSION_TYPE": "x11"}
        self.env.pop("WAYLAND_DISPLAY", None)
        self.out = tmp / "typed.txt"
        self.xterm: subprocess.Popen | None = None

    def open_terminal(self) -> None:
        """An xterm reading the keyboard into self.out, focused."""
        script = f'stty iutf8 erase "^?" -echo; exec cat > "{self.out}"'
        self.xterm = subprocess.Popen(
            ["xterm", "-u8", "-geometry", "80x24+0+0", "-e", "sh", "-c", script],
            env={**self.env, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # --onlyvisible: found before it is mapped, a window cannot take the focus (BadMatch:
        # `windowfocus` failed so on a loaded machine)
        window = self.xdotool("search", "--sync", "--onlyvisible", "--class", "xterm").split()[0]
        self.xdotool("windowfocus", "--sync", window)
        deadline = time.monotonic() + 30  # a loaded machine starts an xterm slowly
        while not self.out.exists():  # the shell has run stty and started cat
            if time.monotonic() > deadline:
                raise TimeoutError("xterm did not start cat")
            time.sleep(0.05)
        time.sleep(0.2)

    def xdotool(self, *args: str) -> str:
        return subprocess.run(
            ["xdotool", *args], env=self.env, capture_output=True, text=True, check=True, timeout=30
        ).stdout

    def read_back(self, lines: int, timeout_s: float = 10) -> str:
        """Press Return (ends the last line) and wait until `lines` lines reached the file."""
        self.xdotool("key", "Return")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.out.read_text(encoding="utf-8")
            if text.count("\n") >= lines:
                return text[:-1]  # without the Return pressed here
            time.sleep(0.05)
        raise TimeoutError(f"expected {lines} lines, got {self.out.read_text()!r}")

    def close(self) -> None:
        for proc in (self.xterm, self.xvfb):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def open_session(tmp: Path):
    """Yield an XSession with its terminal open and focused; everything is stopped afterwards."""
    session = XSession(tmp)
    try:
        session.open_terminal()
        yield session
    finally:
        session.close()
