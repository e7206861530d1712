"""Desktop notifications: notify-send (Linux, libnotify) or osascript (macOS); none elsewhere.

A notification is fire-and-forget: the tool runs in the background, its failure is ignored, and
typing never waits for it. The message goes to osascript as an argument, never as script source.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys

TITLE = "dictated"
#: the message is `item 1 of argv`: osascript never reads it as AppleScript
OSASCRIPT = 'on run argv\ndisplay notification (item 1 of argv) with title "dictated"\nend run'


def notify_argv(message: str, platform: str | None = None) -> list[str] | None:
    """The command that shows `message`, or None when this system has no way to."""
    if (platform or sys.platform) == "darwin":
        tool = shutil.which("osascript")
        return [tool, "-e", OSASCRIPT, message] if tool else None
    tool = shutil.which("notify-send")
    return [tool, "--app-name", TITLE, "--", TITLE, message] if tool else None


class Notifier:
    def __init__(self, enabled: bool = True):
        self.enabled = enabled

    def send(self, message: str) -> None:
        argv = notify_argv(message) if self.enabled else None
        if argv is None:
            return
        with contextlib.suppress(OSError):  # no notification is no reason to stop typing
            subprocess.Popen(  # reaped by the next Popen (subprocess._cleanup)
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
