"""What GSM8K with LASER costs: building every variant's truncation for a model of Llama-3.1-8B's shapes, and GSM8K
problems per minute for one variant, through the same code as ``main.py test --config configs/gsm8k.yaml``.

    python benchmarks/gsm8k_cost.py --shape llama-8b      # a GPU: random weights of the real shapes, bf16
    python benchmarks/gsm8k_cost.py --shape small          # a CPU: the same layer count, scaled-down widths

The weights are random (no hub here), so the generations never hit a stop sequence: every problem generates the
full ``--max-gen-toks``. The rate is therefore a lower bound for a real model, whose answers stop earlier. The
prompts are gsm8k_cot's k-shot prompts on synthetic GSM8K-format problems, tokenized by the tests' byte-level BPE
(more tokens per word than Llama-3's tokenizer: the prompt length in tokens is printed). Results go to
``benchmarks/results/gsm8k_cost_<shape>_<device>.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lightning_modules.pretrained import LaserGrid  # noqa: E402
from lightning_modules.laser import factorise, truncated  # noqa: E402
from lightning_modules.pretrained import laser_ranks  # noqa: E402

SHAPES = {  # Llama-3.1-8B: hidden 4096, MLP 14336, 32 layers, 32 heads / 8 KV heads, vocab 128256
    "llama-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=8, vocab_size=128256),
    "small": dict(hidden_size=512, intermediate_size=1792, num_hidden_layers=32, num_attention_heads=8,
                  num_key_value_heads=2, vocab_size=16000),
}
# a selection grid like configs/gsm8k_search.yaml's, on the last 4 layers: 12 matrices, 12 variants
GRID = LaserGrid(matrices=["mlp_in", "mlp_out"], layers=["28-31", 31], rhos=[0.01, 0.1, 0.25])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def build(shape: str, device: torch.device, dtype: torch.dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**SHAPES[shape], max_position_embeddings=8192, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(default)
    return model.eval().requires_grad_(False)


def problems(n: int) -> list[dict]:
    """GSM8K-format records of typical length (GSM8K questions average ~45 words)."""
    out = []
    for i in range(n):
        a, b, c = 12 + i, 7 + i % 5, 3 + i % 4
        q = (f"A bakery sells {a} loaves of bread every morning and {b} more in the afternoon. Each loaf costs {c} dollars. "
             f"On weekends the bakery sells twice as many loaves in the morning, but the afternoon sales stay the same. "
             f"How many dollars does the bakery earn on a weekend day?")
        out.append({"question": q, "answer": f"Morning {2 * a}, afternoon {b}, so {2 * a + b} loaves. {2 * a + b} * {c} = {(2 * a + b) * c}.\n#### {(2 * a + b) * c}"})
    return out


def truncation_cost(model, device) -> dict:
    variants = {name: laser_ranks(model, specs) for name, specs in GRID.variants().items()}
    out = {"variants": len(variants), "matrices": len({m for r in variants.values() for m in r})}
    for randomized in (True, False):
        sync(device)
        t = time.perf_counter()
        factors = factorise(model, variants.values(), randomized=randomized)
        sync(device)
        svd_s = time.perf_counter() - t
        t = time.perf_counter()
        for ranks in variants.values():
            with truncated(model, ranks, factors):
                sync(device)
        sync(device)
        key = "randomized" if randomized else "exact"
        out[key] = {"svd_s": round(svd_s, 2), "svd_s_per_matrix": round(svd_s / out["matrices"], 3), "apply_and_restore_all_variants_s": round(time.perf_counter() - t, 2),
                    "factor_bytes": sum(f.u.numel() + f.s.numel() + f.vh.numel() for f in factors.values()) * 4}
        del factors
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(json.dumps({key: out[key]}), flush=True)
    return out


def gsm8k_rate(model, device, n: int, shots: int, batch: int, max_gen_toks: int, ranks: dict) -> dict:
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    from datamodules.gsm8k import LOCAL_TASK, render_task
    from pipeline.hub_mode import set_offline
    from lm_eval.tasks import TaskManager
    from tests.hf_models import build_tokenizer

    set_offline()
    tok = build_tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        for split in ("train", "test"):
            (Path(tmp) / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in problems(n)))
        render_task(Path(tmp) / "tasks", LOCAL_TASK, {s: f"{tmp}/{s}.jsonl" for s in ("train", "test")})
        lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch)
        tm = TaskManager(include_path=f"{tmp}/tasks")
        with truncated(model, ranks):
            sync(device)
            t = time.perf_counter()
            out = lm_eval.simple_evaluate(model=lm, tasks=[LOCAL_TASK], num_fewshot=shots, limit=n, log_samples=True,
                                          task_manager=tm, gen_kwargs={"max_gen_toks": max_gen_toks})
            sync(device)
            seconds = time.perf_counter() - t
    samples = out["samples"][LOCAL_TASK]
    prompt_tokens = [len(tok(s["arguments"][0][0])["input_ids"]) for s in samples[:8]]  # (context, gen_kwargs)
    return {"problems": n, "num_fewshot": shots, "batch_size": batch, "max_gen_toks": max_gen_toks, "seconds": round(seconds, 2),
            "problems_per_minute": round(60 * n / seconds, 1), "prompt_tokens_mean": round(sum(prompt_tokens) / len(prompt_tokens)),
            "generated_tokens_per_s": round(n * max_gen_toks / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama-8b" if torch.cuda.is_available() else "small")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--shots", type=int, nargs="+", default=[8, 1])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-gen-toks", type=int, default=256)
    parser.add_argument("--skip-gsm8k", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    t = time.perf_counter()
    model = build(args.shape, device, dtype)
    sync(device)
    result = {"shape": args.shape, **SHAPES[args.shape], "dtype": str(dtype).removeprefix("torch."),
              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
              "torch": torch.__version__, "build_s": round(time.perf_counter() - t, 2)}
    print(f"model built in {result['build_s']} s on {result['device']}", flush=True)
    out = Path(__file__).parent / "results" / f"gsm8k_cost_{args.shape}_{device.type}.json"
    save = lambda: out.write_text(json.dumps(result, indent=2) + "\n")  # noqa: E731  after each part: a timeout keeps what ran
    if not args.skip_gsm8k:
        variant = "mlp_out_L28-31@0.1"
        ranks = laser_ranks(model, GRID.variants()[variant])
        result["gsm8k"] = []
        for shots in args.shots:
            r = gsm8k_rate(model, device, args.problems, shots, args.batch_size, args.max_gen_toks, ranks)
            result["gsm8k"].append({"variant": variant, **r})
            print(json.dumps(result["gsm8k"][-1]), flush=True)
            save()
    result["truncation"] = truncation_cost(model, device)
    save()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
