"""dictated: a local, always-on, streaming dictation daemon.

Data flow (one process, one asyncio loop, one inference thread)::

    channels (each: source -> clock -> segmenter -> speculator)
        -> router -> worker -> engine -> annotators -> journal + publisher -> clients
"""

__version__ = "0.1.0"
