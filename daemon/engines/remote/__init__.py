"""The remote engine: utterances sent to OpenAI-compatible transcription servers (vLLM & co).

options (config) -> wav (one utterance in memory) -> client (one HTTP request, SSE reader) ->
pool (which server, backoff) -> engine (the Engine interface, fallback, health).
Kept import-light: nothing here is loaded unless `--engine remote` is chosen.
"""
