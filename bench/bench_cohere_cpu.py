"""Cohere Transcribe at full size on this machine's CPU: our runtime vs transformers fp32.

Builds the published model's architecture (transformers' default `CohereAsrConfig` is the 2.07 B
parameter checkpoint: 48-layer 1280-wide encoder, 8-layer 1024-wide decoder) with random weights
locally, no download; random weights cost the same arithmetic as real ones. In one process it times

- the encoder on 5, 10 and 35 s of audio (transformers' encoder on the utterance's own length is
  the reference; ours adds the once-per-utterance projection);
- the decoder per token: the difference between a long and a short decode divided by the extra
  tokens, so the prompt cancels out, both on one precomputed encoding (transformers' `generate`
  given `encoder_outputs`, with the Cohere settings, vs our greedy loop, logit filters included
  on both sides);
- a 5 s utterance end to end with 20 output tokens (features + encoder + decoder).

Ratios are ours / reference from the same run (below 1.0 is faster). Memory: one fp32 model
(~8.3 GB) serves the reference, then ours in fp32, then is quantised in place to int8; bf16 is
built afterwards as its own model (~4.2 GB) where it is measured. Other processes on the machine
add noise to every row alike; compare ratios, not seconds. Usage:

    nice -n 5 python bench/bench_cohere_cpu.py [--quick] [--repeats N] [--threads N]
                                                [--precisions fp32,int8,bf16]
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import time

import numpy as np
from _common import interleaved_medians, print_table

SAMPLE_RATE = 16000
PROMPT_LENGTH = 10


def audio(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(int(seconds))
    return (0.1 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)


def build(dtype, seed: int = 0):
    import torch
    from transformers import CohereAsrConfig, CohereAsrForConditionalGeneration

    torch.manual_seed(seed)
    start = time.perf_counter()
    model = CohereAsrForConditionalGeneration._from_config(CohereAsrConfig(), dtype=dtype).eval()
    model.requires_grad_(False)
    params = sum(p.numel() for p in model.parameters())
    logging.info(
        "built %.2f B parameters (%s) in %.0f s", params / 1e9, dtype, time.perf_counter() - start
    )
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="5 and 10 s only, fewer tokens, 1 repeat"
    )
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--precisions", default="fp32,int8,bf16")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: cores)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("dictated").setLevel(logging.ERROR)  # no "truncated" warning per run

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from dictated.engines.cohere.decoding import DecodingOptions, GreedyDecoder
    from dictated.engines.cohere.features import compute_features
    from dictated.engines.cohere.precision import (
        COMPUTE_TYPES,
        cpu_has_native_bf16,
        resolve_precision,
    )
    from dictated.engines.cohere.runtime_torch import TorchRuntime

    repeats = args.repeats or (1 if args.quick else 3)
    lengths = (5.0, 10.0) if args.quick else (5.0, 10.0, 35.0)
    short, long = (4, 16) if args.quick else (8, 40)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    default = resolve_precision(None, "cpu").name
    feats = {s: compute_features(audio(s)) for s in lengths}
    prompt = [13764, 7, 4, 16, 62, 62, 5, 9, 11, 13]  # the published English prompt
    eos = 3

    def encoder_inputs(seconds: float):
        f = feats[seconds]
        x = torch.from_numpy(f.values)[None]
        mask = torch.zeros(1, x.shape[1], dtype=torch.long)
        mask[:, : f.valid_frames] = 1
        return x, mask

    rows: list[list] = []
    ref: dict[str, float] = {}
    reference = "transformers fp32"

    def add(name: str, key: str, ms: float) -> None:
        if name == reference:
            ref[key] = ms
        ratio = f"{ms / ref[key]:.2f}x" if key in ref else "-"
        rows.append([name, key, ms, ratio])

    model = build(torch.float32)
    no_eos = [[eos]]  # random weights rarely say eos; make sure both sides decode every token
    pcm5 = audio(5.0)

    def generate(seconds: float, n: int, with_features: bool = False):
        def run():
            f = compute_features(pcm5) if with_features else feats[seconds]
            x = torch.from_numpy(f.values)[None]
            mask = torch.zeros(1, x.shape[1], dtype=torch.long)
            mask[:, : f.valid_frames] = 1
            model.generate(
                input_features=x, attention_mask=mask, decoder_input_ids=torch.tensor([prompt]),
                repetition_penalty=1.1, no_repeat_ngram_size=3, do_sample=False,
                max_new_tokens=n, bad_words_ids=no_eos,
            )  # fmt: skip

        return run

    def decode_only(encoded, n: int):
        return lambda: model.generate(
            encoder_outputs=encoded, decoder_input_ids=torch.tensor([prompt]),
            repetition_penalty=1.1, no_repeat_ngram_size=3, do_sample=False,
            max_new_tokens=n, bad_words_ids=no_eos,
        )  # fmt: skip

    def reference_fns() -> dict[str, list]:
        """Per measure: the functions whose time difference gives the reference figure."""
        fns: dict[str, list] = {}
        for seconds in lengths:
            x, mask = encoder_inputs(seconds)
            fns[f"encoder {seconds:g} s"] = [
                lambda x=x, m=mask: model.model.encoder(x, attention_mask=m)
            ]
        # the decoder figure from `generate` on a precomputed encoding: with the encoder inside,
        # its run-to-run noise (hundreds of ms) swamps a few dozen 30 ms steps (--quick printed a
        # negative ms/token)
        x, mask = encoder_inputs(5.0)
        encoded = model.model.encoder(x, attention_mask=mask)
        fns["decoder ms/token"] = [decode_only(encoded, short), decode_only(encoded, long)]
        fns["5 s utterance, 20 tokens"] = [generate(5.0, 20, with_features=True)]
        return fns

    class NoEos(GreedyDecoder):
        """Our loop, filters and all, with eos banned like the reference's bad_words_ids."""

        def _filtered(self, scores, tokens):
            out = super()._filtered(scores, tokens)
            out[eos] = -np.inf
            return out

    def our_fns(runtime: TorchRuntime) -> dict[str, list]:
        fns: dict[str, list] = {}
        for seconds in lengths:
            f = feats[seconds]
            fns[f"encoder {seconds:g} s"] = [lambda f=f: runtime.encode(f.values, f.valid_frames)]
        f = feats[5.0]
        encoded = runtime.encode(f.values, f.valid_frames)

        def decode(n: int):
            policy = NoEos(DecodingOptions(max_new_tokens=n), eos)
            return lambda: policy.run(runtime, encoded, prompt)

        fns["decoder ms/token"] = [decode(short), decode(long)]
        policy = NoEos(DecodingOptions(max_new_tokens=20), eos)

        def e2e():
            f = compute_features(pcm5)
            policy.run(runtime, runtime.encode(f.values, f.valid_frames), prompt, audio_seconds=5.0)

        fns["5 s utterance, 20 tokens"] = [e2e]
        return fns

    def figure(key: str, ms: list[float]) -> float:
        return (ms[1] - ms[0]) / (long - short) if key == "decoder ms/token" else ms[0]

    def measure(name: str, runtime: TorchRuntime, with_reference: bool = False) -> None:
        """Ours (and, interleaved with it, the reference) for every measure."""
        ours = our_fns(runtime)
        theirs = reference_fns() if with_reference else {}
        for key, fns in ours.items():
            if with_reference:
                # transformers' decoder applies its projection itself: lend it back while it runs
                def lent(fn):
                    def run():
                        model.model.decoder.proj = runtime.proj
                        try:
                            fn()
                        finally:
                            model.model.decoder.proj = torch.nn.Identity()

                    return run

                ms = [
                    ms
                    for ms, _ in interleaved_medians(
                        [lent(fn) for fn in theirs[key]] + fns, repeats
                    )
                ]
                n_ref = len(theirs[key])
                add(reference, key, figure(key, ms[:n_ref]))
                ms = ms[n_ref:]
            else:
                ms = [ms for ms, _ in interleaved_medians(fns, repeats)]
            add(name, key, figure(key, ms))

    with torch.inference_mode():
        if "fp32" in precisions or "int8" in precisions:
            runtime = TorchRuntime(model, "fp32")
            label = "ours fp32" + (" (default)" if default == "fp32" else "")
            measure(label, runtime, with_reference=True)
            model.model.decoder.proj = runtime.proj  # hand the projection back before re-wrapping
            del runtime
            gc.collect()
            if "int8" in precisions:
                start = time.perf_counter()
                runtime = TorchRuntime.from_model(model, COMPUTE_TYPES["int8"])
                logging.info("quantised to int8 in %.0f s", time.perf_counter() - start)
                measure("ours int8", runtime)
                del runtime
        model = None  # the int8 weights, or the fp32 ones when int8 was not asked for
        gc.collect()
        if "bf16" in precisions:
            runtime = TorchRuntime(build(torch.bfloat16), "bf16")
            native = "native" if cpu_has_native_bf16() else "emulated: no AMX/AVX512-BF16"
            measure(f"ours bf16 ({native})" + (" (default)" if default == "bf16" else ""), runtime)
            del runtime
            gc.collect()
    measures = list(dict.fromkeys(r[1] for r in rows))  # in the order first measured
    rows.sort(key=lambda r: (measures.index(r[1]), r[0] != reference))
    load = os.getloadavg()

    print_table(
        f"Cohere Transcribe full size (2.07 B, random weights) on CPU, {torch.get_num_threads()} "
        f"torch threads, cpu capability {torch.backends.cpu.get_cpu_capability()}, native bf16: "
        f"{cpu_has_native_bf16()}; median of {repeats}; ratio = ours / transformers fp32; "
        f"load average at the end {load[0]:.1f} (other processes share the cores)",
        ["runtime", "measure", "ms", "ratio"],
        rows,
    )


if __name__ == "__main__":
    main()
