"""What writing a report costs: one default-sized run, and a sweep of 100 runs (targets: < 10 s and < 60 s).

    python benchmarks/report_cost.py [--run <a run directory>]

Without --run it trains a short run of configs/noisy.yaml with its callbacks (300 steps, W&B offline), then copies
it into a fake sweep directory of 100 tasks (the same files, so reading and drawing cost what 100 runs cost).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from reports import build  # noqa: E402


def short_run(root: Path) -> Path:
    env = {**os.environ, "WANDB_MODE": "offline"}
    subprocess.run([sys.executable, "main.py", "fit", "--config", "configs/noisy.yaml", "--trainer.max_steps", "300",
                    "--trainer.val_check_interval", "50", "--trainer.enable_progress_bar", "false",
                    "--trainer.default_root_dir", str(root)], cwd=REPO, env=env, check=True, capture_output=True)
    return next(root.glob("noisy/*/summary.json")).parent


def fake_sweep(run: Path, root: Path, n: int) -> Path:
    sweep = root / "sweep"
    points = [{"data.init_args.alpha": [0.0, 0.2, 0.5, 0.8][i % 4], "seed_everything": i // 4} for i in range(n)]
    for i in range(n):
        target = sweep / str(i) / "noisy" / f"{i}"
        shutil.copytree(run, target, ignore=shutil.ignore_patterns("wandb", "checkpoints", "report"))
        summary = json.loads((target / "summary.json").read_text()) | {"run_dir": str(target)}
        (target / "summary.json").write_text(json.dumps(summary))
    (sweep / "tasks.json").write_text(json.dumps({"sweep": "bench", "base": "configs/noisy.yaml", "points": points}))
    return sweep


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="an existing run directory (default: train a short one)")
    parser.add_argument("--tasks", type=int, default=100)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run = Path(args.run) if args.run else short_run(root / "runs")
        start = time.perf_counter()
        build.report(run)
        one = time.perf_counter() - start
        sweep = fake_sweep(run, root, args.tasks)
        start = time.perf_counter()
        build.report(sweep)
        many = time.perf_counter() - start
    print(f"run report: {one:.1f} s (target < 10 s); sweep of {args.tasks} runs: {many:.1f} s (target < 60 s)")


if __name__ == "__main__":
    main()
