"""Wall-time cost of the spectrum logger on the default run (target: < 5%).

    python benchmarks/callback_overhead.py [--repeats 2] [--every 100]

Runs ``configs/noisy.yaml`` (W&B offline, as on a compute node) without callbacks and with a
``WeightSpectrumLogger`` over every trainable matrix every ``--every`` steps, alternating, each in a fresh
process. Prints both wall times and, the steadier number on a noisy machine, the seconds the logger itself spent
(SVDs, W&B charts, spectra.npz) as a fraction of its run's wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from run_record.contract import WEIGHT_SPECTRUM, section  # noqa: E402


def run(callbacks_yaml: str, root: str) -> dict:
    overrides = Path(root) / "callbacks.yaml"
    overrides.write_text(callbacks_yaml)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    cmd = [sys.executable, "main.py", "fit", "--config", "configs/noisy.yaml", "--config", str(overrides),
           "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", root]
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True)
    (summary,) = Path(root).glob("*/*/summary.json")
    return json.loads(summary.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--every", type=int, default=100)
    args = parser.parse_args()
    spectrum = (
        "trainer:\n  callbacks:\n    - class_path: callbacks.WeightSpectrumLogger\n"
        f"      init_args: {{every_n_steps: {args.every}}}\n"
    )
    walls: dict[str, list[float]] = {"none": [], "spectrum": []}
    inside = []
    for _ in range(args.repeats):
        for label, yaml in (("none", "trainer:\n  callbacks: []\n"), ("spectrum", spectrum)):
            with tempfile.TemporaryDirectory() as root:
                s = run(yaml, root)
            walls[label].append(s["wall_time_s"])
            if label == "spectrum":
                inside.append(section(s, WEIGHT_SPECTRUM)["seconds"] / s["wall_time_s"])
            print(f"{label:>8}: {s['wall_time_s']:.1f} s", flush=True)
    base, with_cb = min(walls["none"]), min(walls["spectrum"])
    pairs = sorted(100 * (w / b - 1) for b, w in zip(walls["none"], walls["spectrum"]))
    print(f"\nbest wall time: {base:.1f} s without, {with_cb:.1f} s with the spectrum logger "
          f"({100 * (with_cb / base - 1):+.1f}%); back-to-back pairs: {', '.join(f'{p:+.1f}%' for p in pairs)}")
    print(f"time inside the logger: {100 * max(inside):.2f}% of its run (worst of {len(inside)}); target < 5%")


if __name__ == "__main__":
    main()
