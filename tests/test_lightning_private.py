"""Each private Lightning name run_record/lightning_private.py relies on still exists and behaves as relied on: a
Lightning upgrade that changes one fails here, loudly, before any run does."""
import inspect

import lightning as L
import torch
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger

from run_record import lightning_private as lp


def test_cli_private_steps_exist_and_are_called_by_the_cli():
    assert callable(LightningCLI._parse_ckpt_path) and callable(LightningCLI._run_subcommand)
    init = inspect.getsource(LightningCLI.__init__) + inspect.getsource(LightningCLI)
    assert "self._parse_ckpt_path()" in init and "self._run_subcommand(" in init
    assert list(inspect.signature(LightningCLI._run_subcommand).parameters) == ["self", "subcommand"]


def test_logger_experiment_attribute(tmp_path):
    logger = CSVLogger(tmp_path)
    assert not lp.experiment_started(logger)
    logger.experiment  # noqa: B018  starts it
    assert lp.experiment_started(logger) and lp.experiment_or_none(logger) is logger.experiment


class _Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Linear(2, 1)
        self.seen: list[tuple[int, bool, bool]] = []

    def training_step(self, batch, i):
        return self.w(batch).sum()

    def on_train_batch_end(self, outputs, batch, i):
        self.seen.append((i, lp.accumulating(self.trainer), lp.last_batch_of_epoch(self.trainer)))

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.randn(4, 2), batch_size=1)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_loop_flags_and_hpc_path(tmp_path):
    model = _Tiny()
    trainer = L.Trainer(max_epochs=1, accumulate_grad_batches=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model)
    # after batch 0 and 2 no optimizer step (accumulating); the last batch (3) ends the epoch
    assert model.seen == [(0, True, False), (1, False, False), (2, True, False), (3, False, True)]
    assert lp.hpc_checkpoint_path(trainer) == str(tmp_path / "hpc_ckpt_1.ckpt")


def test_wandb_logger_init_arguments_hold_an_unset_anonymous(tmp_path, monkeypatch):
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "disabled")
    logger = WandbLogger(save_dir=str(tmp_path), project="p")
    assert "anonymous" in logger._wandb_init and logger._wandb_init["anonymous"] is None
    lp.drop_unset_wandb_anonymous(logger)
    assert "anonymous" not in logger._wandb_init and logger._wandb_init["project"] == "p"
    asked = WandbLogger(save_dir=str(tmp_path), project="p", anonymous=True)
    lp.drop_unset_wandb_anonymous(asked)
    assert asked._wandb_init["anonymous"] == "allow"  # set by the user: kept
