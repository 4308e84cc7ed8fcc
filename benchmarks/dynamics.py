"""Training dynamics under both init schemes: when the FF learns the noise, when the induction head forms, and what
truncation does at a fixed step. Researchers compare these curves with the paper's, so the init is a choice.

    python benchmarks/dynamics.py                      # paper-like small config, both inits, seeds 0-2 (~17 min on 2 cores)
    python benchmarks/dynamics.py --steps 1000 --seeds 0 1 # the README's table (~6 min)
    python benchmarks/dynamics.py --setting cpu_default --seeds 0 1 --no-attention-only
    python benchmarks/dynamics.py --out benchmarks/results/dynamics.json

Per (setting, init, seed) it reports:
- ff_margin_step: first probed step where layer 2's FF maps the trigger to the noise token (noise margin > 0);
- induction_step: first probed step where layer 2's attention from a repeated trigger puts > 0.5 on the positions
  right after its earlier occurrences that hold the in-context output (AttentionProbe's ``to_output``);
- acc@<step>: the full model's accuracy on the clean test set at those validation steps;
- at the last step, the full model's p_noise and acc, with layer 2's FF output at rank 0 (``ff2_rank0``), and for an
  attention-only twin model (no FF) with layer 2's W_V at rank floor(0.1 dim) (``wv_rank10%``), the paper's
  "attention-only" case where the noise lives in W_V's top directions.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from callbacks import AttentionProbe  # noqa: E402
from datamodules import NoisyRecallDataModule, SyntheticBigram  # noqa: E402
from lightning_modules import NoisyRecallModule, TransformerConfig  # noqa: E402

SETTINGS = {
    # the reference run's structure at a size a CPU trains in about a minute: both FFs MLP, W_Q = I, SGD as the paper,
    # the reference's noise (an existing token that outputs may also be), 65 tokens
    "paper_like": dict(dim=64, seq_len=128, batch_size=128, ff=["mlp", "mlp"], learned_query=False, steps=2000,
                       optimizer=("sgd", 0.03), noise_token=2, outputs_include_noise=True, vocab=65),
    # configs/noisy.yaml
    "cpu_default": dict(dim=128, seq_len=64, batch_size=64, ff=["none", "mlp"], learned_query=True, steps=1500,
                        optimizer=("adamw", 0.003), noise_token=None, outputs_include_noise=False, vocab=64),
}
PROBE_EVERY, VAL_EVERY = 25, 250


class ProbeHistory(AttentionProbe):
    """AttentionProbe that keeps every probe, not only the latest."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.history: list[tuple[int, dict[str, float]]] = []

    def _maybe_probe(self, trainer, pl_module) -> None:
        before = self._last_step
        super()._maybe_probe(trainer, pl_module)
        if self._last_step != before:
            self.history.append((self._last_step, dict(self.latest)))


class ValidationHistory(L.Callback):
    def __init__(self):
        self.history: list[tuple[int, dict[str, float]]] = []

    def on_validation_end(self, trainer, pl_module) -> None:
        self.history.append((trainer.global_step, {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}))


def train(setting: dict, init: str, seed: int, ff: list[str], targets: list[str], rhos: list[float], steps: int):
    L.seed_everything(seed, verbose=False)
    dm = NoisyRecallDataModule(SyntheticBigram(vocab_size=setting["vocab"], seed=0), seq_len=setting["seq_len"],
                               batch_size=setting["batch_size"], alpha=0.5, noise_token=setting["noise_token"],
                               outputs_include_noise=setting["outputs_include_noise"], n_test=256, seed=seed)
    kind, lr = setting["optimizer"]
    opt = (lambda p: torch.optim.SGD(p, lr=lr, momentum=0.9, weight_decay=1e-4)) if kind == "sgd" else \
        (lambda p: torch.optim.AdamW(p, lr=lr, weight_decay=0.1))
    cfg = TransformerConfig(dim=setting["dim"], ff=ff, learned_query=setting["learned_query"], max_seq_len=setting["seq_len"], init=init)
    model = NoisyRecallModule(cfg, optimizer=opt, laser_targets=targets, laser_rhos=rhos, vocab_size=dm.vocab_size, noise_id=dm.noise_id)
    probes, vals = ProbeHistory(every_n_steps=PROBE_EVERY, n_sequences=64), ValidationHistory()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, val_check_interval=VAL_EVERY, check_val_every_n_epoch=None,
                        num_sanity_val_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[probes, vals])
    start = time.perf_counter()
    trainer.fit(model, dm)
    return probes.history, vals.history, time.perf_counter() - start


def first_step(history, key: str, threshold: float) -> int | None:
    return next((step for step, probe in history if probe.get(key, float("-inf")) > threshold), None)


def measure(name: str, init: str, seed: int, steps: int, attention_only: bool = True) -> dict:
    setting = SETTINGS[name]
    probes, vals, seconds = train(setting, init, seed, setting["ff"], ["layers.1.ff.w2"], [0.0], steps)
    final = vals[-1][1]
    row = {
        "setting": name, "init": init, "seed": seed, "seconds": round(seconds, 1),
        "ff_margin_step": first_step(probes, "probe/layers.1.ff/noise_margin", 0.0),
        "induction_step": first_step(probes, "probe/layers.1.attn/to_output", 0.5),
        **{f"acc@{step}": round(m["val/full/acc"], 3) for step, m in vals},
        "p_noise": round(final["val/full/p_noise"], 3), "acc": round(final["val/full/acc"], 3),
        "ff2_rank0_p_noise": round(final["val/layers.1.ff.w2@rho0/p_noise"], 3),
        "ff2_rank0_acc": round(final["val/layers.1.ff.w2@rho0/acc"], 3),
    }
    if not attention_only:
        return row
    _, vals_attn, _ = train(setting, init, seed, ["none", "none"], ["layers.1.attn.wv"], [0.1], steps)
    attn = vals_attn[-1][1]
    row |= {"attn_only_p_noise": round(attn["val/full/p_noise"], 3), "attn_only_acc": round(attn["val/full/acc"], 3),
            "wv_rank10%_p_noise": round(attn["val/layers.1.attn.wv@rho0.1/p_noise"], 3),
            "wv_rank10%_acc": round(attn["val/layers.1.attn.wv@rho0.1/acc"], 3)}
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="paper_like")
    parser.add_argument("--inits", nargs="+", default=["scaled", "reference"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, help="default: the setting's")
    parser.add_argument("--out", help="also write the rows as JSON here")
    parser.add_argument("--no-attention-only", dest="attention_only", action="store_false",
                        help="skip the attention-only twin model (W_V truncation)")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    rows = []
    for init in args.inits:
        for seed in args.seeds:
            rows.append(measure(args.setting, init, seed, args.steps or SETTINGS[args.setting]["steps"], args.attention_only))
            print(json.dumps(rows[-1]), flush=True)
    columns = [c for c in rows[0] if c not in ("setting",)]
    print("\n| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(str(r.get(c)) for c in columns) + " |")
    for init in args.inits:
        mine = [r for r in rows if r["init"] == init]
        for key in ("ff_margin_step", "induction_step"):
            known = [r[key] for r in mine if r[key] is not None]
            print(f"{init}: {key} median {statistics.median(known) if known else None} ({len(known)}/{len(mine)} runs reached it)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
