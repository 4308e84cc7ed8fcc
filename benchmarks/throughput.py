"""Throughput of the data generator and of a training step, against the machine's measured fp32 matmul rate.

    python benchmarks/throughput.py                 # paper-scale shapes (batch 512 x length 256, dim 256)
    python benchmarks/throughput.py --config cpu    # the default CPU config's shapes
    python benchmarks/throughput.py --device cuda --precision bf16 --compile --out benchmarks/results/x.json

``--precision``: fp32 (true float32 matmuls), tf32 (float32 tensors, TF32 matmuls) or bf16 (autocast, as Lightning's
bf16-mixed). Data generation is measured on the CPU (one process, as each DataLoader worker) and on the device
(``sample_on: device``: DeviceStream's chunks), in tokens per second against the step's consumption.

Model FLOPs are counted by torch.utils.flop_counter (forward + backward of one step). Its counter has no formula
for the CPU attention kernel, so MFU is printed twice: from the counted FLOPs alone (a lower bound), and with the
causal attention products added analytically (QK^T and AV over the lower triangle: 2 * B * T^2 * d per layer
forward, 3x that with backward). MFU = FLOPs / step time / the best fp32 matmul FLOP/s measured on the same device.
Targets (2-core CPU, from the issue): generation >= 5M tokens/s; paper-config step >= 70% MFU.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from datamodules.bigram import SyntheticBigram  # noqa: E402
from datamodules.generator import NoisyRecallGenerator  # noqa: E402
from lightning_modules.transformer import Transformer, TransformerConfig  # noqa: E402

SHAPES = {
    "paper": dict(batch=512, seq_len=256, dim=256, optimizer="sgd"),
    "cpu": dict(batch=64, seq_len=64, dim=128, optimizer="adamw"),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_time(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return min(times)


def matmul_flops(device: torch.device, sizes: tuple[int, ...] = (1024, 2048, 3072)) -> float:
    """The machine's fp32 matmul rate: the best of square matmuls of a few sizes."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        best = max(best, 2 * n**3 / best_time(lambda: a @ b, 10, device))
    return best


def noisy_generator(seq_len: int) -> NoisyRecallGenerator:
    return NoisyRecallGenerator(SyntheticBigram(64).build(), seq_len, alpha=0.5)


def generation_tokens_per_s(batch: int, seq_len: int, device: torch.device = torch.device("cpu"), chunk: int = 1) -> float:
    """Tokens per second the sampler makes on ``device``, ``chunk`` batches per call (DeviceStream's way)."""
    gen = noisy_generator(seq_len)
    g = torch.Generator(device=device).manual_seed(0)
    return chunk * batch * seq_len / best_time(lambda: gen.sample(batch * chunk, g), 5, device)


def training_step(shape: dict, device: torch.device, repeats: int, micro_batches: int = 1, precision: str = "fp32",
                  compile: bool = False) -> dict:
    gen = noisy_generator(shape["seq_len"])
    batch = gen.sample(shape["batch"], torch.Generator().manual_seed(0))
    tokens, mask = batch["tokens"].to(device), batch["mask"].to(device)
    net = Transformer(TransformerConfig(dim=shape["dim"], max_seq_len=shape["seq_len"], vocab_size=gen.vocab_size)).to(device)
    params = [p for p in net.parameters() if p.requires_grad]
    torch.set_float32_matmul_precision("highest" if precision == "fp32" else "high")
    forward = torch.compile(net) if compile else net
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    opt = (torch.optim.SGD(params, lr=0.03, momentum=0.9, weight_decay=1e-4) if shape["optimizer"] == "sgd"
           else torch.optim.AdamW(params, lr=3e-3, weight_decay=0.1))

    def step() -> None:
        # one optimizer step over the whole batch; with micro_batches > 1 the gradients are accumulated over
        # chunks, as `trainer.accumulate_grad_batches` does (on a CPU, smaller activations stay in cache)
        opt.zero_grad(set_to_none=True)
        for x, m in zip(tokens.chunk(micro_batches), mask.chunk(micro_batches)):
            with autocast:
                logits = forward(x[:, :-1])
            loss = F.cross_entropy(logits[m].float(), x[:, 1:][m]) / micro_batches
            loss.backward()
        opt.step()

    if compile:
        step()  # compile outside the counter
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    attention = 3 * 2 * shape["batch"] * shape["seq_len"] ** 2 * shape["dim"] * len(net.layers)
    if device.type == "cuda":  # the CUDA attention kernels are counted (full square): nothing to add
        attention = 0
    seconds = best_time(step, repeats, device)
    return {"step_s": seconds, "flops_per_step": flops, "attention_flops_added": attention,
            "tokens_per_s": shape["batch"] * shape["seq_len"] / seconds, "achieved_flops": flops / seconds,
            "achieved_flops_with_attention": (flops + attention) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(SHAPES), default="paper")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--micro-batches", type=int, default=None,
                        help="split each step's batch (gradient accumulation); default 16 on CPU for 'paper', else 1")
    parser.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default="fp32")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--chunk", type=int, default=16, help="batches per call of the on-device generator")
    parser.add_argument("--out", help="also write the result as JSON here")
    args = parser.parse_args()
    device, shape = torch.device(args.device), SHAPES[args.config]
    if args.micro_batches is None:
        args.micro_batches = 16 if device.type == "cpu" and args.config == "paper" else 1
    peak = matmul_flops(device)
    gen = generation_tokens_per_s(shape["batch"], shape["seq_len"])
    gen_device = generation_tokens_per_s(shape["batch"], shape["seq_len"], device, args.chunk)
    train = training_step(shape, device, args.repeats, args.micro_batches, args.precision, args.compile)
    result = {
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "threads": torch.get_num_threads(), "config": args.config, **shape, "precision": args.precision,
        "compile": args.compile, "micro_batches": args.micro_batches, "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"), "matmul_fp32_flops": peak, "generation_tokens_per_s": gen,
        "generation_on_device_tokens_per_s": gen_device, "chunk": args.chunk,
        "generation_over_consumption_on_device": gen_device / train["tokens_per_s"],
        **train, "mfu": train["achieved_flops"] / peak, "mfu_with_attention": train["achieved_flops_with_attention"] / peak,
    }
    print(f"device {device} ({torch.get_num_threads()} threads), shapes '{args.config}': {shape},"
          f" {args.micro_batches} micro-batch(es) per step")
    print(f"  fp32 matmul (best square)     {peak / 1e9:10.1f} GFLOP/s")
    print(f"  data generation               {gen / 1e6:10.2f} M tokens/s   (target >= 5 at batch 512 x length 256)")
    print(f"  data generation on {device.type:<4}       {gen_device / 1e6:10.2f} M tokens/s   ({args.chunk} batches per call;"
          f" {result['generation_over_consumption_on_device']:.1f}x the step's consumption)")
    print(f"  training step                 {train['step_s'] * 1e3:10.1f} ms  = {train['tokens_per_s'] / 1e3:.1f} k tokens/s")
    print(f"  model FLOPs per step          {train['flops_per_step'] / 1e9:10.1f} GFLOP counted"
          f" + {train['attention_flops_added'] / 1e9:.1f} GFLOP causal attention")
    print(f"  model FLOP utilisation (MFU)  {100 * result['mfu']:10.1f} %   counted FLOPs only (target >= 70 for 'paper')")
    print(f"                                {100 * result['mfu_with_attention']:10.1f} %   with attention")
    print(json.dumps(result))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
