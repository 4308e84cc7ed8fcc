"""SlurmRequeue: on SLURM's warning signal, checkpoint at the next step boundary, then requeue the task.

Lightning's own SLURM handler saves the checkpoint inside the signal handler, i.e. wherever the signal lands:
between an optimizer step and the step counter, a resumed run repeats a step and no longer matches an
uninterrupted one. Here the handler only sets a flag; the checkpoint is written after the next optimizer step
(all DDP ranks agree when), as ``hpc_ckpt_<n>.ckpt`` in the run directory, which is where Lightning's SLURM resume
looks for it when the requeued task starts. Training then stops cleanly; at the end of fit, rank 0 marks
summary.json ``requeued``, closes the W&B run and calls ``scontrol requeue``. If SLURM refuses the requeue (e.g. a
job submitted with ``--no-requeue``), the run fails loudly, naming the checkpoint, rather than ending as if it were
waiting to continue. The CLI switches Lightning's handler off under SLURM (``SLURMEnvironment(auto_requeue=False)``)
and adds this callback.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time

import lightning as L
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities import rank_zero_info

from run_record.lightning_private import accumulating, hpc_checkpoint_path
from run_record.summary import RunSummary

PACKED = "FFVA_PACKED"  # set by pipeline/packing.py for the runs it starts: they leave the requeue to it
from run_record.wandb import finish_wandb
from run_record.contract import RecordedCallback


class SlurmRequeue(RecordedCallback, L.Callback):
    def __init__(self, signum: int = signal.SIGUSR1, wait_seconds: float = 300.0):
        self.signum, self.wait_seconds = signum, wait_seconds
        self.requested = False
        self.checkpoint: str | None = None
        self.requeued = False  # read by RunSummary: the run is not over, it continues in a requeued task

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and SLURMEnvironment.detect():
            self._previous_handler = signal.signal(self.signum, self._on_signal)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if getattr(self, "_previous_handler", None) is not None:
            signal.signal(self.signum, self._previous_handler)
            self._previous_handler = None

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.teardown(trainer, pl_module, "fit")  # Lightning skips callbacks' teardown after an exception

    @property
    def stops_for_requeue(self) -> bool:
        return self.requeued

    def _on_signal(self, signum, frame) -> None:
        self.requested = True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        # between optimizer steps (gradient accumulation) a checkpoint would drop the accumulated gradients
        if not SLURMEnvironment.detect() or accumulating(trainer):
            return
        # every rank must take the same branch (saving a checkpoint is collective)
        if not trainer.strategy.reduce_boolean_decision(self.requested, all=False):
            return
        path = hpc_checkpoint_path(trainer)
        trainer.save_checkpoint(path)
        self.checkpoint, self.requeued = path, True
        trainer.should_stop = True  # the loop ends cleanly after this step; the requeue happens in on_fit_end
        rank_zero_info(f"SLURM signal: saved {path} at step {trainer.global_step}; requeueing")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.requeued or not trainer.is_global_zero:
            return
        summaries = [cb for cb in trainer.callbacks if isinstance(cb, RunSummary)]
        for cb in summaries:  # summary.json says "requeued" before the job is stopped
            cb.write(trainer, "requeued")
        finish_wandb()  # flush the run: `scontrol requeue` stops this job within seconds
        if os.environ.get(PACKED):  # one of several runs sharing this array task: its packer requeues the task
            print(f"SLURM signal: checkpoint saved, run marked requeued; {PACKED} is set, the packer requeues", flush=True)
            return
        array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
        job = f"{array}_{task}" if array and task else os.environ["SLURM_JOB_ID"]
        error = requeue(job)
        if error is None:
            print(f"scontrol requeue {job}: ok", flush=True)
            # SLURM now stops this job and queues it again. Exiting first would end the job as completed and
            # race the requeue, so wait to be stopped.
            time.sleep(self.wait_seconds)
            return
        message = (f"SLURM did not requeue job {job} ({error}); training stopped at step {trainer.global_step} "
                   f"and saved {self.checkpoint}: resume it with `python main.py fit --config <its config.yaml> "
                   f"--ckpt_path {self.checkpoint}`")
        for cb in summaries:
            cb.write(trainer, "failed", error=message)
        raise RuntimeError(message)


def requeue(job: str) -> str | None:
    """``scontrol requeue <job>``; returns None on success, else why it failed."""
    try:
        result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"scontrol: {e}"
    return None if result.returncode == 0 else (result.stderr or result.stdout).strip() or f"exit code {result.returncode}"
