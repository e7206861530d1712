"""Peak memory of reading a 1 h recording: the old whole-file decode against the streaming source.

Each way runs in a fresh child process (peak RSS only ever grows within a process) over the same
1 h file, made by tiling the demo recording: 16 kHz mono WAV (the daemon's own format) and
44.1 kHz stereo FLAC (resampled on the way). The reference is the old `load_audio`, which decoded
the whole file to float32 before converting it; ratios are against it, in this run.

    .venv/bin/python bench/bench_file_memory.py [--minutes 60]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile
from _common import REPO, print_table

DEMO = REPO / "samples" / "dictation-demo.wav"

# Each child prints {"rss_mb": peak, "s": seconds, "samples": n} for one way of reading FILE.
CHILD = r"""
import asyncio, json, resource, sys, time
from pathlib import Path
import numpy as np
import soundfile
from dictated.audio.format import float_to_int16
from dictated.audio.load import AudioFile, to_mono_16k
way, path = sys.argv[1], Path(sys.argv[2])
t0 = time.perf_counter()
n = 0
if way == "whole-file decode (old load_audio)":
    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    n = len(float_to_int16(to_mono_16k(data, rate)))
elif way == "streaming decode (AudioFile.blocks)":
    n = sum(len(b) for b in AudioFile(path).blocks())
elif way == "streaming file source + segmenter":
    from dictated.audio.source import FileSource
    from dictated.segmenter import Segmenter, SegmenterOptions

    async def main():
        seg, count = Segmenter(SegmenterOptions()), 0
        async for block in FileSource(path).blocks():
            seg.push(block.pcm)
            count += len(block.pcm)
        seg.flush()
        return count

    n = asyncio.run(main())
elif way != "imports only":
    raise SystemExit(f"unknown way {way}")
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rss_mb": rss_mb, "s": time.perf_counter() - t0, "samples": n}))
"""

WAYS = (
    "imports only",
    "whole-file decode (old load_audio)",
    "streaming decode (AudioFile.blocks)",
    "streaming file source + segmenter",
)
REFERENCE = WAYS[1]


def make_files(directory: Path, minutes: float) -> list[tuple[str, Path]]:
    """The demo tiled to `minutes`, written block by block (this process stays small too)."""
    demo, rate = soundfile.read(str(DEMO), dtype="int16")
    wav = directory / "hour-16k-mono.wav"
    total = int(minutes * 60 * rate)
    with soundfile.SoundFile(str(wav), "w", rate, 1, "PCM_16") as out:
        written = 0
        while written < total:
            chunk = demo[: total - written]
            out.write(chunk)
            written += len(chunk)
    flac = directory / "hour-44k-stereo.flac"
    subprocess.run(["sox", str(wav), "-r", "44100", "-c", "2", str(flac)], check=True)
    return [("16 kHz mono WAV", wav), ("44.1 kHz stereo FLAC", flac)]


def measure(way: str, path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, way, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the test file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dictated-bench-") as tmp:
        for label, path in make_files(Path(tmp), args.minutes):
            results = {way: measure(way, path) for way in WAYS}
            ref = results[REFERENCE]
            samples = {r["samples"] for w, r in results.items() if w != "imports only"}
            assert len(samples) == 1, f"the ways decoded different lengths: {samples}"
            rows = [
                [way, r["rss_mb"], r["rss_mb"] / ref["rss_mb"], r["s"], r["s"] / ref["s"]]
                for way, r in results.items()
            ]
            print_table(
                f"{args.minutes:g} min, {label} ({path.stat().st_size / 1e6:.0f} MB on disk, "
                f"{samples.pop() / 16000 / 60:.1f} min at 16 kHz)",
                ["way", "peak RSS MB", "x whole-file", "seconds", "x whole-file"],
                rows,
            )
    print(
        "\nPeak RSS includes the interpreter and numpy/soundfile/soxr (the 'imports only' row);"
        " the streaming rows stay flat however long the file."
    )


if __name__ == "__main__":
    np.seterr(all="raise")
    main()
