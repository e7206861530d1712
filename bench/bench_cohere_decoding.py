"""Cohere decoding: our greedy loop on the torch runtime vs transformers' `generate`, same model.

Tiny seeded `CohereAsrConfig` models (the test fixtures) and a larger random one; the same speech
features go to all three: transformers' `generate`, our greedy loop over transformers' decoder
forward (`decoder="transformers"`), and our loop over the static-cache decoder (the default).
Times cover encoder + decoder (features excluded), median of the repeats; the ratio is
ours / generate (below 1.0 is faster). Usage:

    python bench/bench_cohere_decoding.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from _common import interleaved_medians, print_table

MODELS = {  # name -> (seed, make_tiny_cohere_dir overrides)
    "tiny seed 0 (32-d, 54 tok)": (0, {}),
    "tiny seed 1 (32-d, 54 tok)": (1, {}),
    "small (256-d x4, 246 tok)": (
        2,
        {"max_position_embeddings": 256, "hidden_size": 256, "num_hidden_layers": 4,
         "num_attention_heads": 4, "encoder_hidden_size": 128},
    ),
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    # random tiny models run to the token cap on purpose; don't print a warning per run
    logging.getLogger("dictated").setLevel(logging.ERROR)

    import torch

    from dictated.engines.cohere.decoding import DecodingOptions, GreedyDecoder
    from dictated.engines.cohere.features import compute_features
    from dictated.engines.cohere.runtime_torch import TorchRuntime
    from dictated.engines.cohere.tokenizer import CohereTokenizer
    from tests.engines.cohere.fixtures import (
        load_tiny_model,
        make_tiny_cohere_dir,
        train_tiny_tokenizer,
    )
    from tests.speech import SENTENCES, compose

    features = compute_features(compose(list(SENTENCES[:2]), 0.8).pcm)
    x = torch.from_numpy(features.values)[None]
    mask = torch.zeros(1, x.shape[1], dtype=torch.long)
    mask[:, : features.valid_frames] = 1
    root = Path(tempfile.mkdtemp(prefix="bench-cohere-"))
    tok = train_tiny_tokenizer(root / "tokenizer.model")
    rows = []
    for name, (seed, overrides) in MODELS.items():
        model_dir = make_tiny_cohere_dir(
            root / name.split()[0] / str(seed), seed, tokenizer_model=tok, **overrides
        )
        prompt = CohereTokenizer.from_dir(model_dir).prompt("en")
        n_new = overrides.get("max_position_embeddings", 64) - len(prompt)
        runtime = TorchRuntime.from_pretrained(model_dir, device="cpu", compute_type="float32")
        loop = TorchRuntime.from_pretrained(
            model_dir, device="cpu", compute_type="float32", decoder="transformers"
        )
        decoder = GreedyDecoder(DecodingOptions(max_new_tokens=n_new), eos_id=3)
        model = load_tiny_model(model_dir)

        def ours(runtime=runtime, decoder=decoder, prompt=prompt):
            encoded = runtime.encode(features.values, features.valid_frames)
            return list(decoder.run(runtime, encoded, prompt).tokens)

        def transformers_loop(runtime=loop, decoder=decoder, prompt=prompt):
            encoded = runtime.encode(features.values, features.valid_frames)
            return list(decoder.run(runtime, encoded, prompt).tokens)

        def theirs(model=model, prompt=prompt, n_new=n_new):
            out = model.generate(
                input_features=x, attention_mask=mask, decoder_input_ids=torch.tensor([prompt]),
                repetition_penalty=1.1, no_repeat_ngram_size=3, do_sample=False, max_new_tokens=n_new,
            )  # fmt: skip
            return [t for t in out[0, len(prompt) :].tolist() if t != 3]

        (t_ours, tokens_ours), (t_loop, tokens_loop), (t_ref, tokens_ref) = interleaved_medians(
            [ours, transformers_loop, theirs], args.repeats
        )
        same = "yes" if tokens_ours == tokens_ref == tokens_loop else "NO"
        rows.append(
            [name, len(tokens_ref), t_ref, t_loop, t_ours, f"{t_loop / t_ref:.2f}x",
             f"{t_ours / t_ref:.2f}x", same]
        )  # fmt: skip
    print_table(
        f"Cohere greedy decoding (encoder + decoder), median of {args.repeats}, "
        f"torch threads: {torch.get_num_threads()}",
        [
            "model",
            "tokens",
            "generate ms",
            "transformers loop ms",
            "static loop ms",
            "transformers loop/generate",
            "static/generate",
            "same tokens",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
