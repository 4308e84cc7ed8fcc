"""Cost of one MemoryProbe call against the training it rides on (target: each call at most 5% of the training
steps between two calls).

    python benchmarks/memory_probe_cost.py [--calls 20] [--steps 30]

For each shipped config with the probe (``configs/noisy.yaml``, ``configs/hijack.yaml``), builds its model and data
through the CLI (no training run), times ``MemoryProbe.probe`` and an optimizer step on a training batch (forward,
backward, the config's optimizer), and reports the probe's share of the training time over its call interval. Writes
benchmarks/results/memory_probe_cost.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CONFIGS = ("configs/noisy.yaml", "configs/hijack.yaml")


def measure(config: str, calls: int, steps: int) -> dict:
    import torch

    from callbacks import MemoryProbe
    from pipeline.cli import ExperimentCLI

    cli = ExperimentCLI(args=["--config", config, "--trainer.logger", "false", "--trainer.callbacks=[]"], run=False)
    module, dm = cli.model, cli.datamodule
    dm.setup("fit")
    args = next(c["init_args"] for c in __import__("yaml").safe_load(Path(config).read_text())["trainer"]["callbacks"]
                if c["class_path"].endswith("MemoryProbe"))
    every = args.get("every_n_steps", 50)
    # the shortest interval between two calls: the early steps, else every_n_steps
    calls_at = sorted({0, *args.get("early_steps", []), *range(0, 3 * every, every)})
    shortest = min(b - a for a, b in zip(calls_at, calls_at[1:]))
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    batches = iter(dm.train_dataloader())
    step_times = []
    for i in range(steps + 3):
        batch = next(batches)
        start = time.perf_counter()
        loss = module.loss(batch)  # what training_step computes, without a Trainer
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i >= 3:  # the first steps warm up the allocator
            step_times.append(time.perf_counter() - start)
    probe_times = []
    for _ in range(calls):
        start = time.perf_counter()
        MemoryProbe.probe(module.net, dm.gen, dm.seq_len)
        probe_times.append(time.perf_counter() - start)
    step, probe = statistics.median(step_times), statistics.median(probe_times)
    return {"config": config, "threads": torch.get_num_threads(), "step_seconds": step, "probe_seconds": probe,
            "every_n_steps": every, "share_of_interval": probe / (every * step), "shortest_interval": shortest,
            "share_of_shortest_interval": probe / (shortest * step)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/memory_probe_cost.json"))
    args = parser.parse_args(argv)
    results = [measure(c, args.calls, args.steps) for c in CONFIGS]
    for r in results:
        print(f"{r['config']}: a probe call {1000 * r['probe_seconds']:.1f} ms, a training step {1000 * r['step_seconds']:.1f} ms, "
              f"every {r['every_n_steps']} steps: {100 * r['share_of_interval']:.2f}% of the interval, "
              f"{100 * r['share_of_shortest_interval']:.2f}% of the shortest ({r['shortest_interval']} steps; target <= 5%)")
    report = {"date": time.strftime("%Y-%m-%d"), "results": results}
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
