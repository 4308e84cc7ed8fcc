"""Do CPU runs of one commit and seed agree across machines, and which cheap setting makes them agree?

The same seed-0 demo printed different digits on two machines of one kind (issue 28.9): CPU kernels round
differently (the BLAS and ATen's vectorised kernels pick a code path per instruction set, and the thread count
splits reductions), and many training steps amplify the difference. One machine can stand in for several: the
instruction set a kernel may use is an environment setting (ATEN_CPU_CAPABILITY for ATen's kernels,
MKL_ENABLE_INSTRUCTIONS for MKL's), and so is the thread count. This script trains ``configs/noisy.yaml`` for
``--steps`` steps under each emulated machine, with and without the candidate setting (one thread, MKL's
conditional numerical reproducibility MKL_CBWR=COMPATIBLE, ATen's default kernels), and records the final metrics.

    python benchmarks/cpu_agreement.py --steps 300 --out benchmarks/results/cpu_agreement.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# what differs between CPU machines, emulated here
MACHINES = {
    "this CPU, 2 threads": {"OMP_NUM_THREADS": "2"},
    "this CPU, 1 thread": {"OMP_NUM_THREADS": "1"},
    "an AVX2-only CPU, 2 threads": {"OMP_NUM_THREADS": "2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}
# the candidate: the same code path on every x86-64 CPU (settings read when the process starts)
PORTABLE = {"OMP_NUM_THREADS": "1", "MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "default"}


def train(env: dict, steps: int, root: Path) -> dict:
    start = time.perf_counter()
    args = [sys.executable, "main.py", "fit", "--config", "configs/noisy.yaml", "--trainer.max_steps", str(steps),
            "--trainer.val_check_interval", str(steps), "--trainer.enable_progress_bar", "false", "--report", "false",
            "--trainer.callbacks", "[]", "--trainer.logger", "false", "--trainer.default_root_dir", str(root)]
    subprocess.run(args, cwd=REPO, env={**os.environ, "WANDB_MODE": "disabled", **env}, check=True,
                   capture_output=True, text=True)
    (summary_path,) = root.glob("*/*/summary.json")
    summary = json.loads(summary_path.read_text())
    return {"metrics": {k: summary["variants"]["full"][k] for k in ("p_noise", "p_correct", "acc", "loss")},
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "cpu_agreement.json"))
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for setting, extra in (("default", {}), ("portable", PORTABLE)):
            for machine, env in MACHINES.items():
                name = f"{setting} | {machine}"
                # the portable setting overrides the thread count and the ATen path, but not what the CPU offers MKL
                results[name] = train({**env, **extra}, args.steps, Path(tmp) / name.replace(" ", "_").replace("|", ""))
                print(name, results[name], flush=True)

    def spread(setting: str) -> dict:
        rows = [r["metrics"] for k, r in results.items() if k.startswith(setting)]
        return {m: max(r[m] for r in rows) - min(r[m] for r in rows) for m in rows[0]}

    out = {"date": time.strftime("%Y-%m-%d"), "steps": args.steps, "config": "configs/noisy.yaml", "portable": PORTABLE,
           "runs": results, "spread_default": spread("default"), "spread_portable": spread("portable")}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({"spread_default": out["spread_default"], "spread_portable": out["spread_portable"]}, indent=2))


if __name__ == "__main__":
    main()
