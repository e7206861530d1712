"""dictated-type: type each final transcript into the focused application.

`compose` turns transcripts into keystrokes (joining, spoken commands); one module per backend
sends them (`xdotool`, `wtype`, `ydotool`, `osascript`, `quartz`, `dryrun`); `detect` picks one for
this session; `cli` is the console script.
"""
