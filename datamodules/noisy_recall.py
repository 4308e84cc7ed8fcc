"""NoisyRecallDataModule: streaming noisy training sequences and a fixed clean (alpha = 0) test set."""
from __future__ import annotations

from dataclasses import replace
from typing import Literal

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.bigram import BigramSource, SyntheticBigram
from datamodules.generator import DeviceStream, LossOn, NoisyRecallGenerator, NoisyRecallStream
from run_record.kinds import KNOWLEDGE_HIJACK, NOISY_RECALL
from run_record.names import length_set
from run_record.contract import RecordedData


class _Sequences(Dataset):
    """A fixed set of sampled sequences, one dict per sequence (so DDP samplers can split it)."""

    def __init__(self, batch: dict[str, torch.Tensor]):
        self.batch = batch

    def __len__(self) -> int:
        return len(self.batch["tokens"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.batch.items()}


class NoisyRecallDataModule(RecordedData, L.LightningDataModule):
    """Noisy in-context recall (Chen, Bruna & Bietti 2406.03068).

    Args:
        bigram: where bigram statistics come from (default: ``SyntheticBigram()``, 64 tokens, no file needed).
        seq_len: tokens per training input sequence (T).
        batch_size: sequences per training step (per process under DDP).
        n_triggers: k trigger tokens per sequence.
        alpha: probability that a trigger is followed by the noise token instead of its output token.
        trigger_mode: ``fixed`` (the k most frequent tokens) or ``random`` (k drawn per sequence from the marginal).
        noise_token: ``null`` for an extra token id V, or an existing token id.
        outputs_include_noise: draw output tokens from the whole vocabulary, the noise token included (the reference
            code's setting; needs an existing ``noise_token``). Default: outputs are never the noise token.
        loss_on: ``repeat_triggers`` (2nd+ occurrence of a trigger), ``all_triggers`` or ``all`` positions.
        ood_outputs: draw train and test output tokens from disjoint halves of the vocabulary.
        n_test: sequences in the clean test set (alpha = 0), fixed by ``test_seed``.
        test_seq_len: length of test sequences (default seq_len; longer tests length generalisation).
        seed: training stream seed; ``null`` takes the run's ``seed_everything``.
        num_workers: dataloader worker processes (each gets its own stream).
        sample_on: ``cpu`` (worker processes, then copied to the device) or ``device``: sampled on the training device
            itself, ``chunk`` batches at a time (datamodules/generator.py DeviceStream): on a GPU the generator then
            keeps up with a fast step without worker processes.
        chunk: batches sampled at once by ``sample_on: device``.
        test_lengths: length generalisation: for each length L, two more clean test sets of ``n_test`` sequences of
            length L, named ``T<L>:anywhere`` (pairs anywhere) and, for L > seq_len, ``T<L>:beyond`` (no trigger
            before ``seq_len``, so every in-context pair lies beyond the training length). Their metrics (with ``p_global``, the
            probability of the trigger's global bigram answer) are logged as ``val/<variant>/<metric>@<set>``.
    """

    def __init__(
        self,
        bigram: BigramSource | None = None,
        seq_len: int = 256,
        batch_size: int = 64,
        n_triggers: int = 1,
        alpha: float = 0.5,
        trigger_mode: Literal["fixed", "random"] = "fixed",
        noise_token: int | None = None,
        outputs_include_noise: bool = False,
        loss_on: LossOn = "repeat_triggers",
        ood_outputs: bool = False,
        n_test: int = 512,
        test_seq_len: int | None = None,
        test_batch_size: int | None = None,
        seed: int | None = None,
        test_seed: int = 12345,
        num_workers: int = 0,
        test_lengths: list[int] | None = None,
        sample_on: Literal["cpu", "device"] = "cpu",
        chunk: int = 16,
    ):
        super().__init__()
        if batch_size < 1 or n_test < 1:
            raise ValueError(f"data.batch_size and data.n_test must be >= 1, got {batch_size} and {n_test}")
        self.bigram = (bigram or SyntheticBigram()).build()
        self.gen = NoisyRecallGenerator(
            self.bigram, seq_len, n_triggers, alpha, trigger_mode, noise_token, loss_on,
            outputs_include_noise=outputs_include_noise,
        )
        if ood_outputs:
            pool = self.gen.output_pool
            self.gen.output_pool = pool[0::2]
            self.test_pool = pool[1::2]
        else:
            self.test_pool = self.gen.output_pool
        if sample_on not in ("cpu", "device") or chunk < 1:
            raise ValueError(f"data.sample_on must be cpu | device and data.chunk >= 1, got {sample_on!r}, {chunk}")
        if sample_on == "device" and num_workers:
            raise ValueError("data.sample_on: device samples in the training process; set data.num_workers: 0")
        self.sample_on, self.chunk = sample_on, chunk
        self.batch_size, self.n_test, self.num_workers = batch_size, n_test, num_workers
        self.test_seq_len = test_seq_len or seq_len
        self.test_batch_size = test_batch_size or batch_size
        self.seed = int(torch.initial_seed()) if seed is None else seed
        self.test_seed = test_seed
        self.test_set: _Sequences | None = None
        self.test_lengths = sorted(set(test_lengths or []))
        if any(L < 3 for L in self.test_lengths):
            raise ValueError(f"data.test_lengths must be >= 3, got {self.test_lengths}")
        self.extra_sets: dict[str, _Sequences] = {}

    # Linked into the model config by the CLI.
    @property
    def vocab_size(self) -> int:
        return self.gen.vocab_size

    @property
    def noise_id(self) -> int:
        return self.gen.noise_id

    @property
    def seq_len(self) -> int:
        return max([self.gen.seq_len, self.test_seq_len, *self.test_lengths])

    @property
    def eval_sets(self) -> list[tuple[str, int, str]]:
        """(name, length, placement) of the validation sets after the main one, in dataloader order."""
        # "beyond" needs room past the training length for a trigger, its output and the trigger again
        return [(length_set(L, placement), L, placement) for L in self.test_lengths for placement in ("anywhere", "beyond")
                if placement == "anywhere" or L >= self.gen.seq_len + 3]

    @property
    def eval_set_names(self) -> list[str]:
        return [name for name, _, _ in self.eval_sets]

    @property
    def global_answer(self) -> torch.Tensor:
        """(vocab,) each token's most likely successor under the bigram: the 'global' answer a trigger competes with."""
        best = self.bigram.transitions.argmax(-1)
        return torch.cat([best, best.new_tensor([-1])]) if self.vocab_size > len(best) else best

    def check_trainer(self, trainer, stage: str | None = None) -> None:
        """Called by the CLI before any compute.

        - Under DDP the test set is split across the processes; when they cannot split it evenly, Lightning's
          DistributedSampler repeats sequences and skews the reduced metrics.
        - The training stream is endless, so a fit needs ``trainer.max_steps`` (or ``limit_train_batches`` with
          ``max_epochs``); ``max_steps: 0`` trains nothing.
        - The test set, and training batches, must hold scored positions (a repeated trigger), or every metric is
          empty and the loss NaN.
        """
        if self.n_test % trainer.world_size:
            raise ValueError(f"data.n_test ({self.n_test}) must be divisible by the number of processes "
                             f"({trainer.world_size} = trainer.devices x trainer.num_nodes), or the validation "
                             "metrics count some test sequences twice")
        if stage == "fit":
            steps, epochs, batches = trainer.max_steps, trainer.max_epochs, trainer.limit_train_batches
            if steps == 0:
                raise ValueError("trainer.max_steps is 0: the run would train nothing (set it > 0)")
            bounded_epochs = isinstance(batches, int) and epochs is not None and epochs > 0
            if (steps is None or steps < 0) and not bounded_epochs:
                raise ValueError(f"trainer.max_steps is {steps}: the training stream is endless, so the run would never "
                                 "end; set trainer.max_steps (or trainer.limit_train_batches with trainer.max_epochs)")
        self.setup(stage or "fit")
        if self.scored(self.test_set) == 0:
            raise ValueError(f"the clean test set ({self.n_test} sequences of length {self.test_seq_len}) has no scored "
                             "trigger position: every metric would be empty; raise data.test_seq_len or data.n_test")
        empty = [name for name, data in self.extra_sets.items() if self.scored(data) == 0]
        if empty:  # e.g. a length too short for a repeated trigger, or a "beyond" set with no room past seq_len
            raise ValueError(f"data.test_lengths {self.test_lengths}: the test set(s) {empty} ({self.n_test} sequences each) "
                             "hold no scored trigger position, so their metrics would be a mean over nothing; use longer "
                             "lengths (a 'beyond' set needs room past data.seq_len for a trigger, its output and the "
                             "trigger again) or raise data.n_test")
        if stage == "fit":
            g = torch.Generator().manual_seed(self.seed)
            if not any(self.gen.sample(self.batch_size, g)["mask"].any() for _ in range(4)):
                raise ValueError(f"4 sampled training batches of {self.batch_size} sequences of length {self.gen.seq_len} "
                                 "hold no trained position (a repeated trigger): raise data.seq_len or data.batch_size")

    def record_kinds(self) -> list[str]:
        """The experiments this data makes (summary.json ``kinds``): the noise study when there is noise (or nothing
        else), the knowledge-hijack study's length generalisation when there are longer test sets."""
        kinds = [NOISY_RECALL] if self.gen.alpha > 0 or not self.test_lengths else []
        return kinds + ([KNOWLEDGE_HIJACK] if self.test_lengths else [])

    @staticmethod
    def scored(data: _Sequences) -> int:
        """Scored positions of a fixed set: repeated triggers with an in-context answer."""
        return int(((data.batch["answer"] >= 0) & data.batch["mask"]).sum())

    def clean_generator(self) -> NoisyRecallGenerator:
        return replace(self.gen, alpha=0.0, seq_len=self.test_seq_len, output_pool=self.test_pool)

    def setup(self, stage: str) -> None:
        if self.test_set is None:
            g = torch.Generator().manual_seed(self.test_seed)
            self.test_set = _Sequences(self.clean_generator().sample(self.n_test, g))
            for name, length, placement in self.eval_sets:
                gen = replace(self.clean_generator(), seq_len=length)
                prefix = self.gen.seq_len if placement == "beyond" else 0
                self.extra_sets[name] = _Sequences(gen.sample(self.n_test, torch.Generator().manual_seed(self.test_seed), prefix))

    def train_dataloader(self) -> DataLoader:
        rank, skip = 0, 0
        if self.trainer is not None:
            rank = self.trainer.global_rank
            # on resume, continue the stream where the checkpointed run stopped
            skip = self.trainer.global_step * self.trainer.accumulate_grad_batches
        if self.sample_on == "device":
            device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
            return DataLoader(DeviceStream(self.gen, self.batch_size, self.seed, rank, skip, device, self.chunk), batch_size=None)
        stream = NoisyRecallStream(self.gen, self.batch_size, self.seed, rank, skip)
        return DataLoader(stream, batch_size=None, num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        main = DataLoader(self.test_set, batch_size=self.test_batch_size)
        if not self.extra_sets:
            return main
        return [main, *(DataLoader(self.extra_sets[n], batch_size=self.test_batch_size) for n in self.eval_set_names)]

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()
