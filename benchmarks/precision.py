"""Do the speed settings keep the science? Each setting (TF32, bf16 mixed precision, torch.compile) trains the same
config for the same seeds as fp32, and the numbers the paper rests on are compared.

    python benchmarks/precision.py --config paper --device cuda           # on a GPU: the paper config, 5000 steps
    python benchmarks/precision.py --config small                         # here: a short CPU config, same comparison

Per setting and seed it records the full model's P(noise), the rank-0 layer-2 FF's P(noise) and accuracy, the step
at which the FF learns the noise (its noise margin turns positive) and the step at which the induction head forms
(attention to the in-context outputs passes 0.5), and the time per step. A setting passes when, for every quantity,
its seeds' values lie within fp32's seeds' range widened by that range (at least a floor: 0.02 for probabilities, one
probe interval for steps). Writes benchmarks/results/precision_<config>_<device>.json. With ``--parallel k`` k runs
share the device at once (the science is unchanged; their step times are then not compared, and no speed-up is given).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from run_record.files import METRICS_FILE, read_csv_rows  # noqa: E402

SETTINGS = {  # name -> main.py overrides
    "fp32": ["--trainer.precision", "32-true", "--model.init_args.matmul_precision", "highest"],
    "tf32": ["--trainer.precision", "32-true", "--model.init_args.matmul_precision", "high"],
    "bf16-mixed": ["--trainer.precision", "bf16-mixed", "--model.init_args.matmul_precision", "high"],
    "bf16-mixed+compile": ["--trainer.precision", "bf16-mixed", "--model.init_args.matmul_precision", "high",
                           "--model.init_args.compile", "true"],
}
PROBE = '{"class_path": "callbacks.AttentionProbe", "init_args": {"every_n_steps": %d, "early_steps": [1, 2, 5, 10, 15, 20, 30, 40]}}'
CONFIGS = {  # name -> (config file, overrides, probe interval)
    "paper": ("configs/paper/noisy.yaml", ["--data.init_args.sample_on", "device", "--data.init_args.num_workers", "0"], 25),
    "small": ("configs/noisy.yaml", ["--trainer.max_steps", "300", "--trainer.val_check_interval", "100",
                                      "--model.init_args.early_eval_steps", "[]"], 10),
}
QUANTITIES = {"p_noise": 0.02, "rank0_p_noise": 0.02, "rank0_acc": 0.02, "ff_learns_noise_step": None, "induction_step": None}


def without_logger(config: str, directory: Path) -> str:
    """A copy of ``config`` with ``trainer.logger: false``: a shipped config names WandbLogger, whose options
    jsonargparse can only check with wandb installed (it is not on every GPU image), even when the command line then
    turns the logger off."""
    spec = yaml.safe_load((REPO / config).read_text())
    spec.setdefault("trainer", {})["logger"] = False
    path = directory / config.replace("/", "_")  # configs/paper/noisy.yaml and configs/noisy.yaml apart
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def first_step(rows: list[dict], key: str, above: float) -> int | None:
    return next((int(r["step"]) for r in rows if r.get(key) not in (None, "") and float(r[key]) > above), None)


def run(config: str, overrides: list[str], probe_every: int, setting: str, seed: int, device: str, root: Path,
        timeout: float | None = None) -> dict:
    args = [sys.executable, "main.py", "fit", "--config", config, *overrides, *SETTINGS[setting], "--seed_everything", str(seed),
            "--trainer.accelerator", device, "--report", "false",  # the config is a without_logger copy
            "--trainer.enable_progress_bar", "false", "--trainer.callbacks", f"[{PROBE % probe_every}]",
            "--trainer.default_root_dir", str(root / f"{setting}-{seed}")]
    start = time.perf_counter()
    try:
        out = subprocess.run(args, cwd=REPO, capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "disabled"},
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"setting": setting, "seed": seed, "error": f"not finished within {timeout:.0f} s"}
    if out.returncode != 0:
        return {"setting": setting, "seed": seed, "error": out.stderr.strip().splitlines()[-1][:300]}
    (summary_path,) = (root / f"{setting}-{seed}").glob("*/*/summary.json")
    summary = json.loads(summary_path.read_text())
    rows = read_csv_rows(summary_path.parent / METRICS_FILE)
    v = summary["variants"]
    return {"setting": setting, "seed": seed, "p_noise": v["full"]["p_noise"],
            "rank0_p_noise": v["layers.1.ff.w2@rho0"]["p_noise"], "rank0_acc": v["layers.1.ff.w2@rho0"]["acc"],
            "ff_learns_noise_step": first_step(rows, "probe/layers.1.ff/noise_margin", 0.0),
            "induction_step": first_step(rows, "probe/layers.1.attn/to_output", 0.5),
            "step_seconds": (summary.get("timing") or {}).get("step_seconds"), "wall_seconds": round(time.perf_counter() - start, 1)}


def verdicts(results: list[dict], probe_every: int, timed: bool = True) -> dict[str, dict]:
    """Per setting: pass or not, and per quantity fp32's range, the allowed band and the setting's values."""
    by = {}
    for r in results:
        by.setdefault(r["setting"], []).append(r)
    ref = by.get("fp32", [])
    out = {}
    for setting, rows in by.items():
        if setting == "fp32" or any("error" in r for r in rows) or any("error" in r for r in ref):
            out[setting] = {"pass": None if setting == "fp32" else False,
                            "error": next((r["error"] for r in rows + ref if "error" in r), None)}
            continue
        checks, ok = {}, True
        for q, floor in QUANTITIES.items():
            base = [r[q] for r in ref]
            values = [r[q] for r in rows]
            if any(x is None for x in base + values):  # an event that did not happen: the same in both, or not
                same = [x is None for x in base] == [x is None for x in values] if len(base) == len(values) else False
                checks[q] = {"fp32": base, "setting": values, "pass": same}
                ok &= same
                continue
            spread = max(base) - min(base)
            margin = max(spread, floor if floor is not None else probe_every)
            low, high = min(base) - margin, max(base) + margin
            passed = all(low <= x <= high for x in values)
            checks[q] = {"fp32": base, "setting": values, "band": [low, high], "pass": passed}
            ok &= passed
        steps = [r["step_seconds"] for r in rows if r.get("step_seconds")]
        ref_steps = [r["step_seconds"] for r in ref if r.get("step_seconds")]
        speedup = statistics.fmean(ref_steps) / statistics.fmean(steps) if timed and steps and ref_steps else None
        out[setting] = {"pass": ok, "speedup_vs_fp32": speedup, "checks": checks}
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--parallel", type=int, default=1, help="runs at once on the device (their step times not compared)")
    parser.add_argument("--timeout", type=float, help="seconds for all the runs together; a run still going then is an error")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more main.py overrides (last)")
    parser.add_argument("--out", help="result file (default benchmarks/results/precision_<config>_<device>.json)")
    args = parser.parse_args(argv)
    config, overrides, probe_every = CONFIGS[args.config]
    settings = ["fp32", *[s for s in args.settings if s != "fp32"]]
    deadline = time.monotonic() + args.timeout if args.timeout else None

    def one(job: tuple[str, int]) -> dict:
        left = max(1.0, deadline - time.monotonic()) if deadline else None
        result = run(config, [*overrides, *args.extra], probe_every, *job, args.device, Path(tmp), left)
        print(json.dumps(result), flush=True)
        return result

    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max(1, args.parallel)) as pool:
        config = without_logger(config, Path(tmp))
        results = list(pool.map(one, [(setting, seed) for setting in settings for seed in args.seeds]))
    report = {"config": args.config, "device": args.device, "date": time.strftime("%Y-%m-%d"), "seeds": args.seeds,
              "parallel": args.parallel, "results": results, "verdicts": verdicts(results, probe_every, args.parallel == 1)}
    path = Path(args.out) if args.out else REPO / "benchmarks" / "results" / f"precision_{args.config}_{args.device}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    for setting, v in report["verdicts"].items():
        print(f"{setting}: {'pass' if v['pass'] else 'reference' if v['pass'] is None else 'FAIL'}"
              + (f" ({v['speedup_vs_fp32']:.2f}x fp32's step)" if v.get("speedup_vs_fp32") else ""))
    print(f"-> {path}")
    return report


if __name__ == "__main__":
    main()
