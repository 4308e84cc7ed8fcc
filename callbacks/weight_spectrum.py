"""WeightSpectrumLogger: how each weight matrix's singular values evolve during training."""
from __future__ import annotations

import os
import time
from typing import Any

import lightning as L
import numpy as np
import torch

from callbacks.common import log_scalars, network, trainable_matrices
from run_record.wandb import wandb_run
from lightning_modules.laser import select_parameters, singular_values
from run_record.names import STEP, spectrum_key
from run_record.files import SPECTRA_FILE, atomic_path
from run_record.contract import RecordedCallback, WEIGHT_SPECTRUM


def spectrum_summary(s: torch.Tensor) -> dict[str, float]:
    """Scalars of a spectrum s (largest first): top singular value, stable rank ||W||_F^2 / ||W||_2^2,
    effective rank exp(entropy of s / sum(s)) (Roy & Vetterli 2007), and nuclear norm sum(s)."""
    s = s.double()
    top, nuclear = float(s[0]), float(s.sum())
    if nuclear == 0.0:  # the zero matrix (e.g. truncated to rank 0)
        return {"top": 0.0, "stable_rank": 0.0, "effective_rank": 0.0, "nuclear_norm": 0.0}
    p = s[s > 0] / nuclear
    return {
        "top": top,
        "stable_rank": float((s**2).sum() / top**2),
        "effective_rank": float(torch.exp(-(p * p.log()).sum())),
        "nuclear_norm": nuclear,
    }


class WeightSpectrumLogger(RecordedCallback, L.Callback):
    """Every ``every_n_steps`` optimizer steps (and at step 0), the singular values of the chosen matrices.

    Logged per matrix ``<name>``:
    - to every logger: ``spectrum/<name>/{top,stable_rank,effective_rank,nuclear_norm}``;
    - to W&B: ``spectrum/<name>/histogram``, the singular values as a W&B histogram (its panel shows the spectrum
      against the step, live), and at the end of training (and every ``chart_every_n_steps`` if set)
      ``spectrum/<name>/chart``, a line chart of singular value vs index with one line per logged step (at most
      ``chart_max_lines`` steps, evenly spaced, always the first and the latest). W&B tables cost about 60 ms per
      matrix to build and log, hence the sparse default;
    - to the run directory's ``spectra.npz``: ``steps`` (n,) and, per matrix, an (n, min(m, n)) array, so
      spectra can be reviewed and plotted with no W&B access.

    Args:
        every_n_steps: logging period in optimizer steps.
        targets: parameter-name patterns (globs); default every 2-D trainable weight.
        chart_every_n_steps: also log the line charts at these multiples of ``every_n_steps`` (default: only at the end).
        chart_max_lines: steps drawn in each line chart.

    Order matters where callbacks act on the same step: list ``LaserTruncation`` before this one so that the
    spectrum of step s is the truncated one.
    """

    record_name = WEIGHT_SPECTRUM  # its section of summary.json callbacks

    def __init__(
        self, every_n_steps: int = 100, targets: list[str] | None = None, chart_every_n_steps: int | None = None,
        chart_max_lines: int = 16,
    ):
        if every_n_steps < 1 or (chart_every_n_steps is not None and chart_every_n_steps < 1):
            raise ValueError(f"WeightSpectrumLogger.every_n_steps and chart_every_n_steps must be >= 1, got {every_n_steps}, {chart_every_n_steps}")
        if chart_max_lines < 2:
            raise ValueError(f"WeightSpectrumLogger.chart_max_lines must be >= 2, got {chart_max_lines}")
        self.every_n_steps, self.targets = every_n_steps, targets
        self.chart_every_n_steps, self.chart_max_lines = chart_every_n_steps, chart_max_lines
        self._charted: int | None = None  # the step of the last line charts
        self.steps: list[int] = []
        self.spectra: dict[str, list[np.ndarray]] = {}
        self.seconds = 0.0  # time spent in this callback (the benchmark reads it)
        self.path: str | None = None

    def matrices(self, pl_module: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
        net = network(pl_module)
        return select_parameters(net, self.targets) if self.targets is not None else trainable_matrices(net)

    def check_config(self, model: torch.nn.Module, datamodule: Any) -> None:
        if not self.matrices(model):
            raise ValueError("WeightSpectrumLogger: the model has no trainable matrices; set targets")

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.path = os.path.join(os.path.abspath(trainer.log_dir), SPECTRA_FILE)  # log_dir broadcasts: all ranks

    def state_dict(self) -> dict[str, Any]:
        # tensors, not numpy arrays: checkpoints load with torch.load(weights_only=True)
        return {"steps": list(self.steps), "spectra": {k: torch.from_numpy(np.stack(v)) for k, v in self.spectra.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # a resumed run continues the spectra of its checkpoint (and drops any logged after it)
        self.steps = list(state["steps"])
        self.spectra = {k: list(v.numpy()) for k, v in state["spectra"].items()}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._maybe_record(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        self._maybe_record(trainer, pl_module)

    def _maybe_record(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        if step % self.every_n_steps or (self.steps and self.steps[-1] >= step) or not trainer.is_global_zero:
            return  # weights are identical on every rank, so rank 0 alone computes and writes
        start = time.perf_counter()
        self.steps.append(step)
        scalars = {}
        for name, weight in self.matrices(pl_module).items():
            s = singular_values(weight).cpu()
            self.spectra.setdefault(name, []).append(s.numpy())
            scalars |= {spectrum_key(name, k): v for k, v in spectrum_summary(s).items()}
        log_scalars(trainer, scalars, step)
        run = wandb_run(trainer)
        if run is not None:
            import wandb

            hists = {spectrum_key(n, "histogram"): wandb.Histogram(np_histogram=np.histogram(h[-1], bins=64)) for n, h in self.spectra.items()}
            run.log(hists | {STEP: step})
            if self.chart_every_n_steps is not None and step % self.chart_every_n_steps == 0:
                self._log_charts(run, step)
        self._write()
        self.seconds += time.perf_counter() - start

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        run = wandb_run(trainer)
        if run is not None and self.steps and self._charted != self.steps[-1]:
            start = time.perf_counter()
            self._log_charts(run, self.steps[-1])
            self.seconds += time.perf_counter() - start

    def _log_charts(self, run: Any, step: int) -> None:
        import wandb

        self._charted = step
        rows = np.unique(np.linspace(0, len(self.steps) - 1, min(self.chart_max_lines, len(self.steps))).round().astype(int))
        charts = {}
        for name, history in self.spectra.items():
            charts[spectrum_key(name, "chart")] = wandb.plot.line_series(
                xs=list(range(len(history[-1]))),
                ys=[history[i].tolist() for i in rows],
                keys=[f"step {self.steps[i]}" for i in rows],
                title=f"{name}: singular values",
                xname="index",
            )
        run.log(charts | {STEP: step})

    def _write(self) -> None:
        if self.path is None:
            return
        with atomic_path(self.path) as tmp:  # whole: a reader (or a preempted job) never sees half a file
            with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
                np.savez(f, steps=np.asarray(self.steps), **{k: np.stack(v) for k, v in self.spectra.items()})

    def record_files(self) -> list[str]:
        """For summary.json's file list (RunSummary)."""
        return [self.path] if self.path and os.path.isfile(self.path) else []

    def summary(self) -> dict[str, Any]:
        return {"file": self.path, "steps": len(self.steps), "seconds": round(self.seconds, 3)}
