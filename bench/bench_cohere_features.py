"""Cohere features: our numpy FilterbankFeatures vs transformers' CohereAsrFeatureExtractor.

Same real speech (espeak-ng sentences with pauses, cut to 5 s and 35 s), same process; prints
the median time of each, the speed-up and the largest absolute difference. Usage:

    python bench/bench_cohere_features.py [--repeats 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from _common import print_table


def block_medians(fns, repeats: int, rounds: int = 5) -> list[float]:
    """Median ms of each function, timed in alternating blocks so slow spells hit both alike.

    Blocks, not single calls, alternate, with a pause before each: right after a call, numpy's
    BLAS threads or torch's OpenMP threads keep spinning for a while, and on two cores that
    would penalise whichever library runs next.
    """
    times: list[list[float]] = [[] for _ in fns]
    per_block = max(1, repeats // rounds)
    for _ in range(rounds):
        for fn, bucket in zip(fns, times, strict=True):
            time.sleep(0.5)  # the other library's worker threads go to sleep
            fn()  # discarded warm-up
            for _ in range(per_block):
                start = time.perf_counter()
                fn()
                bucket.append((time.perf_counter() - start) * 1000.0)
    return [statistics.median(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--torch-threads", type=int, help="torch.set_num_threads for the reference")
    args = parser.parse_args()

    import torch
    from transformers import CohereAsrFeatureExtractor

    from dictated.audio.format import SAMPLE_RATE, int16_to_float32
    from dictated.engines.cohere.features import compute_features

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    from tests.speech import SENTENCES, compose

    speech = int16_to_float32(compose(list(SENTENCES), 0.8).pcm)
    reference = CohereAsrFeatureExtractor(dither=0.0)
    rows = []
    for seconds in (5, 35):
        x = speech[: seconds * SAMPLE_RATE]
        ours = compute_features(x)
        theirs = reference(x, sampling_rate=SAMPLE_RATE, return_tensors="np")["input_features"][0]
        diff = float(np.abs(ours.values - theirs).max())
        t_ours, t_ref = block_medians(
            [
                lambda x=x: compute_features(x),
                lambda x=x: reference(x, sampling_rate=SAMPLE_RATE, return_tensors="np"),
            ],
            args.repeats,
        )
        rows.append([f"{seconds} s", t_ref, t_ours, f"{t_ref / t_ours:.2f}x", f"{diff:.2e}"])
    print_table(
        f"Cohere features, median of {args.repeats} (torch threads: {torch.get_num_threads()})",
        ["clip", "transformers ms", "ours ms", "speed-up", "max abs diff"],
        rows,
    )


if __name__ == "__main__":
    main()
