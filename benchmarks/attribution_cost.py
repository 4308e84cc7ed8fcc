"""What the end-of-training singular attribution adds to the demo: configs/noisy.yaml run side by side with the
SingularAttribution callback on (as shipped) and off, one after the other on this machine; the target is at most 10%
of the demo's wall time (issue 29).

    python benchmarks/attribution_cost.py --out benchmarks/results/attribution_cost.json
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

import yaml

REPO = Path(__file__).resolve().parents[1]


def run(config: Path, root: Path) -> dict:
    start = time.perf_counter()
    subprocess.run([sys.executable, "main.py", "fit", "--config", str(config), "--trainer.enable_progress_bar", "false",
                    "--report", "false", "--trainer.logger", "false", "--trainer.default_root_dir", str(root)],
                   cwd=REPO, env={**os.environ, "WANDB_MODE": "disabled"}, check=True, capture_output=True)
    (path,) = root.glob("*/*/summary.json")
    summary = json.loads(path.read_text())
    section = summary["callbacks"].get("singular_attribution") or {}
    return {"process_seconds": round(time.perf_counter() - start, 1), "wall_time_s": summary["wall_time_s"],
            "attribution_seconds": section.get("seconds")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "attribution_cost.json"))
    args = parser.parse_args()
    shipped = yaml.safe_load((REPO / "configs" / "noisy.yaml").read_text())
    off = json.loads(json.dumps(shipped))
    off["trainer"]["callbacks"] = [c for c in off["trainer"]["callbacks"] if not c["class_path"].endswith("SingularAttribution")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "off.yaml").write_text(yaml.safe_dump(off))
        result = {"on": run(REPO / "configs" / "noisy.yaml", tmp / "on"), "off": run(tmp / "off.yaml", tmp / "off")}
    on, off_ = result["on"], result["off"]
    result |= {"date": time.strftime("%Y-%m-%d"), "config": "configs/noisy.yaml",
               "added_fraction_of_wall_time": round((on["process_seconds"] - off_["process_seconds"]) / off_["process_seconds"], 4),
               "callback_fraction_of_wall_time": round(on["attribution_seconds"] / on["wall_time_s"], 4),
               "target": "at most 0.10"}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
