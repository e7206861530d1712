"""Meeting captions: cue timing and wrapping, SRT/WebVTT writers, a terminal view and a live web page.

`cues` and `writers` are standard library only, so `dictated transcribe --srt/--vtt` shares them.
"""
