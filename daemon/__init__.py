"""dictated: a local, always-on, streaming dictation daemon.

Data flow (one process, one asyncio loop, one inference thread)::

    audio source -> segmenter -> worker -> engine -> journal + publisher -> clients
"""

__version__ = "0.1.0"
