"""SlurmRequeue inside one process that SLURM's environment variables say is a SLURM task (the real cluster tests
are in tests/slurm): the warning signal checkpoints at an optimizer step, and a requeue SLURM refuses fails loudly."""
import json
import os
import signal

import lightning as L
import pytest
import torch
import yaml

from main import main as run_main
from tests.slurm.test_slurm_sweeps import tiny_base


class SignalAtBatch(L.Callback):
    """Sends this process SIGUSR1 (what SLURM sends before a time limit) at the start of one training batch."""

    def __init__(self, batch_idx: int):
        self.batch_idx = batch_idx

    environment = None  # the cluster environment the trainer runs under

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        SignalAtBatch.environment = trainer._accelerator_connector.cluster_environment
        if batch_idx == self.batch_idx:
            os.kill(os.getpid(), signal.SIGUSR1)


def test_signal_checkpoints_after_an_optimizer_step_and_a_refused_requeue_fails_naming_the_checkpoint(tmp_path, monkeypatch):
    for key, value in {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "train", "SLURM_JOB_ID": "4242", "SLURM_NODELIST": "localhost",
                       "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no scontrol: SLURM cannot requeue this "job"
    base = tiny_base(tmp_path / "base.yaml", max_steps=20, accumulate_grad_batches=2, logger=False)
    cfg = yaml.safe_load(base.read_text())
    cfg["trainer"]["callbacks"] = [{"class_path": "tests.pipeline.test_preemption.SignalAtBatch", "init_args": {"batch_idx": 4}}]
    base.write_text(yaml.safe_dump(cfg))
    previous = signal.getsignal(signal.SIGUSR1)
    with pytest.raises(RuntimeError, match="SLURM did not requeue job 4242") as error:
        run_main(["fit", "--config", str(base), "--trainer.default_root_dir", str(tmp_path / "runs")])
    assert signal.getsignal(signal.SIGUSR1) == previous  # the handler is put back
    (run_dir,) = (tmp_path / "runs").glob("*/4242-*")  # a plain SLURM job: the job id, then a unique suffix
    (ckpt,) = run_dir.glob("hpc_ckpt_*.ckpt")
    assert str(ckpt) in str(error.value)
    # the signal came during the 5th batch, halfway through an accumulation: the checkpoint waits for the 6th
    # batch's optimizer step (3 steps), rather than dropping the 5th batch's gradients
    assert torch.load(ckpt, weights_only=False)["global_step"] == 3
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and str(ckpt) in summary["error"] and summary["global_step"] == 3
    # Lightning's SLURM environment, with its own requeue handler off; the saved config has no trace of it
    env = SignalAtBatch.environment
    assert type(env).__name__ == "SLURMEnvironment" and env.auto_requeue is False
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["trainer"]["plugins"] is None
