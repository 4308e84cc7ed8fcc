"""Several seeds of one small config trained as one stacked model, against one at a time: the measurement that
chooses between packing processes on a GPU (pipeline/packing.py, built) and stacking replicas (issue 22).

    python benchmarks/stacking.py --device cuda --replicas 1 10 20 --steps 200
    python benchmarks/stacking.py --check          # stacked replicas train exactly as each alone (CPU, seconds)

Replica r is the config's model built from seed r (torch.manual_seed(r), as seed_everything before the model) and
trained on its own rows of each batch; the replicas' parameters get a leading dimension
(torch.func.stack_module_state) and one vmapped functional_call runs them all. Adam is elementwise, so each replica's
update is the one it would get alone; ``--check`` trains 2 replicas stacked and each alone (the module's own
``loss``) and reports the largest loss difference, which must be rounding.

Only the training step is stacked: the pipeline's run directory, evaluations, callbacks and W&B run are per
process. Its timing is therefore the bare step (no Lightning loop), for K = 1 as for K > 1; the gain it reports,
K x step(1) / step(K), bounds what a stacked path in main.py could save on the training steps. Compare it with
benchmarks/gpu.py's packing step (whole runs as processes) before building that path. ``ops_looped_per_replica``
lists the ops vmap has no batching rule for (it runs them once per replica): on the CPU, SDPA's attention kernel.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
import warnings
from pathlib import Path

import torch
import yaml
from torch.func import functional_call, stack_module_state, vmap

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from datamodules.bigram import SyntheticBigram  # noqa: E402
from datamodules.generator import DeviceStream  # noqa: E402
from datamodules.noisy_recall import NoisyRecallDataModule  # noqa: E402
from lightning_modules.noisy_recall import NoisyRecallModule, sequence_loss  # noqa: E402
from lightning_modules.transformer import TransformerConfig  # noqa: E402
from throughput import sync  # noqa: E402  (benchmarks/ is on the path: run as a script, or by gpu.py and the tests)


def build(config: str, seeds: list[int]) -> tuple[NoisyRecallDataModule, list[NoisyRecallModule], dict]:
    """The config's datamodule (its generator; no worker processes) and one module per seed, as the CLI builds them
    (a SyntheticBigram config), and the config's optimizer entry."""
    spec = yaml.safe_load((REPO / config).read_text())
    data, model = dict(spec["data"]["init_args"]), spec["model"]["init_args"]
    bigram = data.pop("bigram")
    if bigram["class_path"].rsplit(".", 1)[-1] != "SyntheticBigram":
        raise SystemExit(f"{config}: data.bigram must be a SyntheticBigram here, got {bigram['class_path']}")
    dm = NoisyRecallDataModule(bigram=SyntheticBigram(**bigram.get("init_args", {})), **(data | {"num_workers": 0}))
    modules = []
    for seed in seeds:
        torch.manual_seed(seed)
        modules.append(NoisyRecallModule(model=TransformerConfig(**model["model"]), vocab_size=dm.vocab_size,
                                         noise_id=dm.noise_id))
    return dm, modules, model.get("optimizer", {})


def adam_lr(config: str, optimizer: dict) -> float:
    if optimizer.get("class_path", "torch.optim.Adam").rsplit(".", 1)[-1] != "Adam":
        raise SystemExit(f"{config}: the stacked step uses Adam (elementwise, so exact per replica); the config names {optimizer['class_path']}")
    return float(optimizer.get("init_args", {}).get("lr", 1e-3))


class Stacked:
    """K replicas of one module as stacked parameters, one optimizer step for all."""

    def __init__(self, modules: list[NoisyRecallModule], lr: float, device: torch.device):
        nets = [m.net.to(device) for m in modules]
        self.params, self.buffers = stack_module_state(nets)
        self.trainable = {k: p for k, p in self.params.items() if p.requires_grad}
        self.opt = torch.optim.Adam(self.trainable.values(), lr=lr)
        base = nets[0]

        def one(params, buffers, tokens, mask):
            # the vmappable form of the module's loss (--check compares the two)
            return sequence_loss(functional_call(base, (params, buffers), (tokens[:, :-1],)), tokens, mask)

        self.losses = vmap(one)

    def step(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """tokens, mask: (K, B, T); returns the K losses before the update."""
        losses = self.losses(self.params, self.buffers, tokens, mask)
        self.opt.zero_grad(set_to_none=True)
        losses.sum().backward()  # replica r's loss depends only on replica r's parameters
        self.opt.step()
        return losses.detach()


def batches(dm: NoisyRecallDataModule, k: int, device: torch.device):
    """One (K, B, T) batch per step, sampled on the device in one call (K x B rows of the config's stream)."""
    for batch in DeviceStream(dm.gen, k * dm.batch_size, dm.seed, device=device, chunk=dm.chunk):
        yield {key: v.view(k, dm.batch_size, *v.shape[1:]) for key, v in batch.items() if key in ("tokens", "mask")}


def time_steps(config: str, k: int, steps: int, warmup: int, device: torch.device) -> dict:
    dm, modules, optimizer = build(config, list(range(k)))
    stacked, stream = Stacked(modules, adam_lr(config, optimizer), device), batches(dm, k, device)
    with warnings.catch_warnings(record=True) as caught:  # ops vmap runs one replica at a time (no batching rule)
        warnings.simplefilter("always")
        for _ in range(max(1, warmup)):
            b = next(stream)
            stacked.step(b["tokens"], b["mask"])
    looped = sorted({m.group(1) for w in caught if (m := re.search(r"batching rule for (\S+?)\.", str(w.message)))})
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        b = next(stream)
        losses = stacked.step(b["tokens"], b["mask"])
    sync(device)
    step_s = (time.perf_counter() - t) / steps
    return {"replicas": k, "step_s": step_s, "step_s_per_replica": step_s / k,
            "final_losses_finite": bool(torch.isfinite(losses).all()), "ops_looped_per_replica": looped}


def check(config: str, steps: int) -> dict:
    """2 replicas stacked against each trained alone by its own module's loss and Adam: the largest loss gap."""
    device = torch.device("cpu")
    dm, modules, optimizer = build(config, [0, 1])
    _, alone, _ = build(config, [0, 1])
    lr = adam_lr(config, optimizer)
    optimizers = [torch.optim.Adam([p for p in m.net.parameters() if p.requires_grad], lr=lr) for m in alone]
    stacked, stream, gap = Stacked(modules, lr, device), batches(dm, 2, device), 0.0
    for _ in range(steps):
        b = next(stream)
        losses = stacked.step(b["tokens"], b["mask"])
        for r, (m, opt) in enumerate(zip(alone, optimizers)):
            loss = m.loss({"tokens": b["tokens"][r], "mask": b["mask"][r]})
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            gap = max(gap, abs(float(loss.detach()) - float(losses[r])))
    return {"steps": steps, "max_loss_gap": gap, "replicas_differ": float((losses[0] - losses[1]).abs()) > 1e-6}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/hijack.yaml")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 10, 20])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--check", type=int, nargs="?", const=20, default=0, help="steps of the exactness check (default 20)")
    parser.add_argument("--out", help="result file (JSON)")
    args = parser.parse_args(argv)
    report: dict = {"config": args.config, "device": args.device, "date": time.strftime("%Y-%m-%d")}
    if args.check:
        report["check"] = check(args.config, args.check)
    else:
        device = torch.device(args.device)
        runs = [time_steps(args.config, k, args.steps, args.warmup, device) for k in sorted(set([1, *args.replicas]))]
        one = runs[0]["step_s"]
        for r in runs:
            r["time_ratio_alone_over_stacked"] = round(one * r["replicas"] / r["step_s"], 2)
        report["runs"] = runs
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
