#!/bin/sh
# Regenerate dictation-demo.wav from dictation-demo.txt (one sentence per line) with espeak-ng and sox:
# 16 kHz mono 16-bit PCM: 0.5 s of silence before the first sentence, 1 s between sentences and
# after the last (enough for the segmenter's hangover to end the last utterance on silence).
# Usage: samples/make_demo.sh   (needs the espeak-ng and sox commands; apt-get install espeak-ng sox)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# -D: no dither, so the output is bit-for-bit repeatable and the pauses are digital silence.
sox -D -V1 -n -r 16000 -c 1 -b 16 "$tmp/lead.wav" trim 0 0.5
sox -D -V1 -n -r 16000 -c 1 -b 16 "$tmp/gap.wav" trim 0 1.0

set -- "$tmp/lead.wav"
i=0
while IFS= read -r line || [ -n "$line" ]; do
    [ -n "$line" ] || continue
    i=$((i + 1))
    espeak-ng -v en-us -s 160 -w "$tmp/raw$i.wav" "$line"
    # espeak-ng writes 22.05 kHz; convert and trim its own leading/trailing silence.
    sox -D -V1 "$tmp/raw$i.wav" -r 16000 -c 1 -b 16 "$tmp/s$i.wav" \
        silence 1 0.01 0.1% reverse silence 1 0.01 0.1% reverse
    [ "$i" -gt 1 ] && set -- "$@" "$tmp/gap.wav"
    set -- "$@" "$tmp/s$i.wav"
done < "$here/dictation-demo.txt"
set -- "$@" "$tmp/gap.wav"

sox -D -V1 "$@" "$here/dictation-demo.wav"
echo "wrote $here/dictation-demo.wav ($i sentences)"
