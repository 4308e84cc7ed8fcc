"""What the harness's batch-wide stop criterion costs on GSM8K, and what stopping each row saves (same generations).

    python benchmarks/stop_criterion.py --model meta-llama/Llama-3.1-8B-Instruct --data-dir <gsm8k jsonl> --limit 128
    python benchmarks/stop_criterion.py          # no model given: the tests' tiny random Llama, on a mixed-ending batch

With a model, gsm8k_cot is run twice on the same problems through ``lm_eval.simple_evaluate``: the harness's
``HFLM`` and ``lightning_modules/stopping.py``'s. Printed: seconds, decoding steps (forward calls), and whether every
generation is identical. A random model never writes a stop string, so without ``--model`` the script instead builds
the case the harness handles badly: a batch whose rows end on different stop strings.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def counted(model, fn):
    calls = []
    hook = model.register_forward_hook(lambda *a: calls.append(1))
    t = time.perf_counter()
    try:
        out = fn()
    finally:
        hook.remove()
    return out, len(calls), time.perf_counter() - t


def real_model(args) -> dict:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from datamodules.gsm8k import LOCAL_TASK, render_task
    from lightning_modules.pretrained import load_causal_lm, load_tokenizer
    from lightning_modules.stopping import hflm_stopping_each_row

    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    model = load_causal_lm(args.model, "main", dtype).to("cuda" if torch.cuda.is_available() else "cpu")
    tok = load_tokenizer(args.model, "main")
    with tempfile.TemporaryDirectory() as tmp:
        render_task(Path(tmp), LOCAL_TASK, {s: f"{args.data_dir}/{s}.jsonl" for s in ("train", "test")})
        result = {}
        for name, cls in (("harness", HFLM), ("stop_each_row", hflm_stopping_each_row())):
            lm = cls(pretrained=model, tokenizer=tok, batch_size=args.batch_size)
            out, steps, seconds = counted(model, lambda: lm_eval.simple_evaluate(
                model=lm, tasks=[LOCAL_TASK], num_fewshot=args.shots, limit=args.limit, log_samples=True,
                task_manager=TaskManager(include_path=tmp)))
            gens = [s["resps"][0][0] for s in out["samples"][LOCAL_TASK]]
            result[name] = {"seconds": round(seconds, 2), "forward_calls": steps, "generations": gens,
                            "em_flexible": out["results"][LOCAL_TASK]["exact_match,flexible-extract"]}
    same = result["harness"].pop("generations") == result["stop_each_row"].pop("generations")
    return {"model": args.model, "shots": args.shots, "limit": args.limit, "batch_size": args.batch_size, **result,
            "identical_generations": same}


def synthetic() -> dict:
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM

    from lightning_modules.stopping import hflm_stopping_each_row
    from tests.hf_models import build_tokenizer, tiny_config
    from tests.lightning_modules.test_stopping import generate, own_stop_strings

    tok = build_tokenizer()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config("llama", len(tok))).eval()
    contexts = ["Tom and", "Kenya is", "school of", "Brittany"]
    free, _ = generate(HFLM(pretrained=model, tokenizer=tok, batch_size=4), model, contexts, ["\x00never"], 256)
    stops = own_stop_strings(free)
    out = {"case": "4 rows, each ending on its own stop string, max_gen_toks 256 (tiny random Llama)", "stops": stops}
    for name, lm in (("harness", HFLM(pretrained=model, tokenizer=tok, batch_size=4)),
                     ("stop_each_row", hflm_stopping_each_row()(pretrained=model, tokenizer=tok, batch_size=4))):
        gens, steps, seconds = counted(model, lambda: generate(lm, model, contexts, stops, 256)[0])
        out[name] = {"forward_calls": steps, "seconds": round(seconds, 3), "generations": gens}
    out["identical_generations"] = out["harness"].pop("generations") == out["stop_each_row"].pop("generations")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model")
    parser.add_argument("--data-dir", help="GSM8K train.jsonl / test.jsonl (with --model)")
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--limit", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    result = real_model(args) if args.model else synthetic()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
