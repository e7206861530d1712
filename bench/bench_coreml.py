"""CoreML for Cohere Transcribe: bucketed encoder cost, decoder ms/token, load cold vs compiled.

On macOS it measures, on `--model DIR` (a pulled or exported model directory) or else on a tiny
random model exported here with the default buckets 5/10/20/35 s:
  - encoder time per bucket, as a ratio to the largest (35 s) window: what bucketing saves;
  - decoder ms/token for the directory's decoder;
  - load time cold (compile into an empty cache, then load) vs compiled (load from the cache).
CoreML's predict exists only on macOS, so on Linux it says so and reports what runs here: export
time and package sizes per precision for tiny random models, fp16 as the reference.

    python bench/bench_coreml.py [--model DIR] [--repeats 5]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import REPO, print_table

sys.path.insert(0, str(REPO / "tests"))  # the tiny-model fixtures

MODELS = {  # name -> make_tiny_cohere_dir overrides
    "tiny (64-d x2)": {"hidden_size": 64, "encoder_hidden_size": 96, "max_position_embeddings": 256},
    "small (256-d x4)": {
        "hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
        "encoder_hidden_size": 192, "encoder_layers": 4, "max_position_embeddings": 256,
    },
}  # fmt: skip


def size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def tiny_model(base: Path, name: str) -> Path:
    from cohere_fixtures import make_tiny_cohere_dir

    return make_tiny_cohere_dir(base / name.split()[0], 0, **MODELS[name])


def export(model: Path, out: Path, precision: str) -> tuple[float, Path]:
    from dictated.engines.cohere.coreml.export import ExportOptions, export_model

    start = time.perf_counter()
    export_model(ExportOptions(model=str(model), out=out, precision=precision, cache_external=True))
    return time.perf_counter() - start, out


def linux_report(base: Path) -> None:
    print("CoreML predict, make_state and compilation need macOS: encoder time per bucket, decoder")
    print("ms/token and load times are measured there (see .github/workflows/macos.yml).")
    print(
        "Here: export time (default buckets 5,10,20,35 s, stateful + cache-external decoders) and"
    )
    print("package sizes per precision; ratio = int8 / fp16 of the same model.")
    rows = []
    for name in MODELS:
        model = tiny_model(base, name)
        results = {p: export(model, base / f"{name.split()[0]}-{p}", p) for p in ("fp16", "int8")}
        ref_s, ref = results["fp16"]
        for precision, (seconds, out) in results.items():
            enc = sum(size_mb(p) for p in out.glob("cohere_encoder_*.mlpackage"))
            ref_enc = sum(size_mb(p) for p in ref.glob("cohere_encoder_*.mlpackage"))
            dec = size_mb(out / "cohere_decoder_stateful.mlpackage")
            ref_dec = size_mb(ref / "cohere_decoder_stateful.mlpackage")
            rows.append(
                [name, precision, seconds, seconds / ref_s, size_mb(out / "cohere_encoder_35s.mlpackage"),
                 enc, enc / ref_enc, dec, dec / ref_dec]
            )  # fmt: skip
    print_table(
        "Export on this machine (tiny random models, default buckets)",
        ["model", "precision", "export s", "time ratio", "enc 35s MB", "4 encoders MB", "enc ratio",
         "stateful dec MB", "dec ratio"],
        rows,
    )  # fmt: skip


def timed(fn, repeats: int) -> float:
    fn()  # first call pays for specialisation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def macos_report(model_dir: Path, base: Path, repeats: int) -> None:
    from dictated.engines.cohere.coreml.models import find_layout
    from dictated.engines.cohere.coreml.runtime import CoreMLRuntime, CoreMLToolsBackend

    layout = find_layout(model_dir)
    packages = [b.path for b in layout.encoders] + [layout.decoder]
    cache = base / "compile-cache"
    rows = []
    for path in packages:
        for phase in ("cold (compile + load)", "compiled (cache)"):
            start = time.perf_counter()
            CoreMLToolsBackend(cache).load(path, "all")
            rows.append([path.name, phase, (time.perf_counter() - start) * 1000.0])
    print_table(f"Load time, {model_dir}", ["package", "phase", "ms"], rows)

    runtime = CoreMLRuntime(layout, CoreMLToolsBackend(cache))
    rng = np.random.default_rng(0)
    enc_rows, largest = [], layout.encoders[-1]
    times = {}
    for bucket in layout.encoders:
        n_mels = bucket.signature.input("input_features").shape[1]
        feats = rng.standard_normal((bucket.feature_frames, n_mels)).astype(np.float32)
        times[bucket.feature_frames] = timed(
            lambda f=feats, b=bucket: runtime.encode(f, b.feature_frames), repeats
        )
    for bucket in layout.encoders:
        t = times[bucket.feature_frames]
        enc_rows.append(
            [
                f"{bucket.seconds:g} s",
                t,
                t / times[largest.feature_frames],
                t / (bucket.seconds * 1000.0),
            ]
        )
    print_table(
        f"Encoder per bucket (ratio vs the {largest.seconds:g} s window; RTF = time / audio)",
        ["bucket", "ms", "ratio", "RTF"],
        enc_rows,
    )

    encoded = runtime.encode(
        np.zeros((largest.feature_frames, 128), np.float32), largest.feature_frames
    )
    steps = min(64, runtime.max_positions)

    def decode():
        session = runtime.start(encoded)
        for token in range(steps):
            session.feed([5 + token % 50])

    per_token = timed(decode, max(1, repeats // 2)) / steps
    print_table(
        "Decoder",
        ["decoder", "flavour", "precision", "positions", "ms/token"],
        [
            [
                layout.decoder.name,
                str(runtime.flavour),
                runtime.decoder_precision,
                runtime.max_positions,
                per_token,
            ]
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", type=Path, help="model directory (macOS; default: a tiny export)"
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bench-coreml-") as tmp:
        base = Path(tmp)
        if sys.platform != "darwin":
            linux_report(base)
            return
        model_dir = args.model
        if model_dir is None:
            _, model_dir = export(tiny_model(base, "tiny (64-d x2)"), base / "tiny-fp16", "fp16")
        macos_report(model_dir, base, args.repeats)


if __name__ == "__main__":
    main()
