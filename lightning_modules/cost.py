"""What a noisy-recall / hijack run will cost, estimated from its config before anything is allocated.

A config can ask for tensors no machine holds (vocabulary 1e6: a 1e12-entry bigram table; dim 1e5; a test set of
1e8 sequences) or for steps that never finish (a 1e5-token sequence: attention is quadratic in it). Torch would
refuse the first only with an allocator message that names no field, and run the second for days. Here the largest
tensors and the matmul work per training step are estimated from the config's numbers, so the CLI can refuse what
cannot fit, naming the field, and print the time per step before the first one when it is long.

The estimates are upper-bound-ish counts of the dominant terms (within a small factor), not a profiler.
"""
from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field

FLOAT, LONG = 4, 8


@dataclass
class Estimate:
    """Bytes per part (keyed by the config fields that set its size) and FLOPs of one training step."""

    host: dict[str, float] = field(default_factory=dict)  # data: bigram tables, test sets (always in host memory)
    device: dict[str, float] = field(default_factory=dict)  # model state and activations (on the accelerator)
    step_flops: float = 0.0
    attention_flops: float = 0.0


def _lookup(d: dict | None, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict):
            return default
        d = d.get(k)
    return default if d is None else d


def vocab_size(data: dict) -> int:
    """The bigram's vocabulary from the config (the synthetic source states it; corpus characters are few)."""
    bigram = _lookup(data, "bigram") or {}
    if "SyntheticBigram" in str(bigram.get("class_path", "SyntheticBigram")):
        v = int(_lookup(bigram, "init_args", "vocab_size", default=64))
    else:
        v = 256  # CorpusBigram: the corpus's characters; SavedBigram: checked against its file when built
    return v + (_lookup(data, "noise_token") is None)


def estimate(model: dict, data: dict) -> Estimate:
    """``model``: NoisyRecallModule's init_args; ``data``: NoisyRecallDataModule's init_args (plain dicts)."""
    net = _lookup(model, "model") or {}
    dim, heads = int(net.get("dim", 64)), int(net.get("n_heads", 1))
    ffs = list(net.get("ff") or ["mlp", "mlp"])
    mult = int(net.get("ff_hidden_mult", 4))
    positional = net.get("positional", "absolute")
    v = vocab_size(data)
    t = int(data.get("seq_len", 256))
    b = int(data.get("batch_size", 64))
    n_test = int(data.get("n_test", 512))
    test_len = int(data.get("test_seq_len") or t)
    lengths = sorted({test_len, *[int(x) for x in data.get("test_lengths") or []]})
    test_b = int(data.get("test_batch_size") or b)
    n_triggers = int(data.get("n_triggers", 1))
    e = Estimate()

    # transitions and marginal, the alias tables (float64 accept, int64 alias) and the Python lists that build them
    e.host[f"data.init_args.bigram.init_args.vocab_size ({v - (_lookup(data, 'noise_token') is None)})"] = v * v * (2 * FLOAT + 2 * LONG + 32)
    # every test set is sampled whole: tokens, mask, answer kept (17 bytes per token), ~40 more while sampling
    n_sets = 1 + 2 * len(data.get("test_lengths") or [])
    e.host[f"data.init_args.n_test ({n_test})"] = n_test * (max(lengths) + 1) * (17 * n_sets + 40)
    # each test token records every trigger's answer: the part that grows with n_triggers is blamed on it
    e.host[f"data.init_args.n_triggers ({n_triggers})"] = n_test * (max(lengths) + 1) * 17 * n_triggers

    width = net.get("ff_width")
    widths = [int(width[i]) if isinstance(width, list) else int(width) if width is not None else mult * dim for i in range(len(ffs))]
    matrices = sum(4 * dim * dim for _ in ffs) + sum({"mlp": 2 * w * dim, "linear": dim * dim}.get(k, 0) for k, w in zip(ffs, widths))
    embeddings = 2 * v * dim
    # weights, gradients and two optimizer moments (Adam) for the matrices; the frozen embeddings once
    e.device[f"model.init_args.model.dim ({dim})"] = matrices * 4 * FLOAT + embeddings * 2 * FLOAT
    if positional == "absolute":  # the position table: blamed on its own size, not on dim
        max_len = int(net.get("max_seq_len", 256))
        e.device[f"model.init_args.model.max_seq_len ({max_len})"] = max_len * dim * 2 * FLOAT

    def activations(batch: int, length: int, backward: bool) -> float:
        per_token = len(ffs) * dim * 6 + 2 * sum(widths) + 3 * v  # residual, q, k, v, outputs, FF hidden; logits
        scores = heads * length * length * (3 if positional in ("relative", "alibi") else 0)  # an explicit mask
        mask = heads * length * length if positional in ("relative", "alibi") else 0
        return (batch * length * per_token + batch * scores * len(ffs)) * FLOAT * (2 if backward else 1) + mask * FLOAT

    e.device[f"data.init_args.batch_size x data.init_args.seq_len ({b} x {t})"] = activations(b, t, backward=True)
    e.device[f"data.init_args.test_batch_size x the longest test length ({test_b} x {max(lengths)})"] = activations(
        test_b, max(lengths), backward=False)

    tokens = b * t
    e.step_flops = 6 * tokens * (matrices + v * dim)  # forward and backward through every matrix and the unembedding
    e.attention_flops = len(ffs) * 3 * 4 * b * t * t * dim  # QK^T and AV, forward and backward
    e.step_flops += e.attention_flops
    return e


def available_bytes(device: str = "cpu") -> float:
    """Free memory: the GPU's (torch.cuda.mem_get_info) or the host's (MemAvailable)."""
    if device == "cuda":
        import torch

        return float(torch.cuda.mem_get_info()[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


@functools.lru_cache(maxsize=None)
def measured_flops(device: str = "cpu", seconds: float = 0.05) -> float:
    """This machine's float32 matmul rate (a 512 x 512 product repeated for ``seconds``)."""
    import torch

    a = torch.full((512, 512), 0.01, device=device)  # not randn: the run's seeded RNG must not move
    (a @ a).sum().item()  # warm-up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        (a @ a).sum().item()
        n += 1
    return 2 * 512**3 * n / (time.perf_counter() - start)


def gib(x: float) -> str:
    return f"{x / 2**30:.3g} GiB"


def check(model: dict, data: dict, device: str, max_steps: int | None) -> str | None:
    """Raise ValueError naming the field when the run cannot fit in memory; return a line about the time per step
    when one step takes over a second here (None otherwise)."""
    e = estimate(model, data)
    free = {"host": available_bytes("cpu"), "device": available_bytes(device) if device == "cuda" else None}
    if free["device"] is None:  # a CPU run keeps everything in host memory
        parts, limit = {**e.host, **e.device}, free["host"]
        where = "memory"
    else:
        if sum(e.host.values()) > 0.8 * free["host"]:
            worst = max(e.host, key=e.host.get)
            raise ValueError(f"{worst}: the data would need about {gib(sum(e.host.values()))} of host memory "
                             f"({gib(e.host[worst])} for this), {gib(free['host'])} is free; make it smaller")
        parts, limit, where = e.device, free["device"], "GPU memory"
    total = sum(parts.values())
    if total > 0.8 * limit:
        worst = max(parts, key=parts.get)
        raise ValueError(f"{worst}: this run would need about {gib(total)} of {where} ({gib(parts[worst])} for this), "
                         f"and {gib(limit)} is free; make it smaller (lightning_modules/cost.py estimates the largest "
                         "tensors from the config)")
    rate = measured_flops(device)
    step = e.step_flops / (0.5 * rate)  # training runs at about half the square-matmul rate (benchmarks/)
    if step < 1.0:
        return None
    share = e.attention_flops / e.step_flops
    total_time = f"; {max_steps} steps take about {_duration(step * max_steps)}" if max_steps and max_steps > 0 else ""
    return (f"Estimated cost: {e.step_flops / 1e12:.3g} TFLOP per training step ({share:.0%} of it attention, quadratic "
            f"in data.init_args.seq_len), about {_duration(step)} per step on this {device} (measured "
            f"{rate / 1e9:.0f} GFLOP/s for float32 matmuls){total_time}.")


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"
