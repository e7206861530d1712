"""dictated-hotkey: a global key that talks to the daemon (`ptt press` / `ptt release`).

`keys` parses a key combination; `trigger` turns key downs and ups into requests (auto-repeat
ignored) and sends them off the listener's thread; one module per backend listens (`x11`: a
passive grab, `pynput`: macOS, `evdev`: /dev/input on any Linux session); `detect` picks one;
`cli` is the console script.
"""
