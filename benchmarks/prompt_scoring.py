"""Prompts per second when scoring prompt sets (IOI) on a real model, asking it for every position's logits (before)
or only the last one (``logits_to_keep=1``, what CausalLMModule does), per LASER variant.

    python benchmarks/prompt_scoring.py [--prompts 200] [--repeats 3]

SmolLM2-135M-Instruct from the package registry (pipeline/registry_model.py), float32, on this machine's threads.
Writes benchmarks/results/prompt_scoring_<device>.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datamodules import PromptDataModule  # noqa: E402
from lightning_modules.laser import factorise, truncated  # noqa: E402
from lightning_modules.pretrained import LaserSpec, laser_variants, load_causal_lm  # noqa: E402
from pipeline.registry_model import GGUF_FILE, fetch  # noqa: E402

VARIANTS = {"mlp_out_L25-29@0.01": [LaserSpec("mlp_out", 0.01, "25-29")]}


def score(net, batches, ranks, factors, keep_last: bool) -> float:
    """Seconds to score every batch with one variant."""
    start = time.perf_counter()
    with torch.no_grad(), truncated(net, ranks, factors):
        for ids in batches:
            out = net(input_ids=ids, logits_to_keep=1) if keep_last else net(input_ids=ids)
            out.logits[:, -1].float().log_softmax(-1)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    folder, why = fetch()
    if folder is None:
        raise SystemExit(f"error: {why}")
    net = load_causal_lm(str(folder), "main", torch.float32, gguf_file=GGUF_FILE)
    data = PromptDataModule(tokenizer=str(folder), gguf_file=GGUF_FILE, n_prompts=args.prompts, batch_size=32)
    batches = [torch.tensor([data.dataset[i]["input_ids"] for i in idx]) for idx in data.length_batches()]
    variants = laser_variants(net, VARIANTS)
    factors = factorise(net, variants.values())
    score(net, batches[:1], {}, factors, True)  # warm-up
    rows = []
    for variant, ranks in variants.items():
        for keep_last in (False, True):
            seconds = min(score(net, batches, ranks, factors, keep_last) for _ in range(args.repeats))
            rows.append({"variant": variant, "logits": "last position only" if keep_last else "every position",
                         "prompts_per_second": round(args.prompts / seconds, 1), "seconds": round(seconds, 3)})
            print(rows[-1])
    device = "cpu"
    out = {"model": "SmolLM2-135M-Instruct (GGUF Q4_1, dequantised to float32)", "prompts": args.prompts, "batch_size": 32,
           "device": device, "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
           "date": time.strftime("%Y-%m-%d"), "repeats": args.repeats, "rows": rows}
    path = Path(__file__).parent / "results" / f"prompt_scoring_{device}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
