"""The one sampler of noisy in-context recall sequences, vectorised over the batch (a loop over positions only).

A sequence is a bigram Markov chain, except right after a *trigger*: there the next token is that trigger's
in-context *output* token, or with probability alpha the generic *noise* token (Chen, Bruna & Bietti, 2406.03068).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from datamodules.bigram import BigramModel

LossOn = Literal["repeat_triggers", "all_triggers", "all"]


def stream_seed(*keys: int) -> int:
    """A 63-bit seed derived from integer keys (seed, rank, batch index) with numpy's SeedSequence."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, dtype=np.uint64)[0]) >> 1


def alias_tables(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Walker/Vose alias tables for each row of (R, V) probabilities, flattened to (R * V,).

    Drawing from row r: pick a column c uniformly; keep c with probability accept[r, c], else take alias[r, c].
    Two gathers and a compare per draw, whatever V is.
    """
    r, v = probs.shape
    accept = torch.ones(r, v, dtype=torch.float64)
    alias = torch.arange(v).repeat(r, 1)
    scaled = (probs.double() / probs.double().sum(-1, keepdim=True) * v).tolist()
    for row, p in enumerate(scaled):
        small = [i for i, x in enumerate(p) if x < 1.0]
        large = [i for i, x in enumerate(p) if x >= 1.0]
        while small and large:
            s, l = small.pop(), large.pop()
            accept[row, s], alias[row, s] = p[s], l
            p[l] -= 1.0 - p[s]
            (small if p[l] < 1.0 else large).append(l)
    return accept.flatten().float(), alias.flatten()


@dataclass
class NoisyRecallGenerator:
    bigram: BigramModel
    seq_len: int
    n_triggers: int = 1
    alpha: float = 0.5
    trigger_mode: Literal["fixed", "random"] = "fixed"
    noise_token: int | None = None  # None: an extra id V that never occurs naturally
    loss_on: LossOn = "repeat_triggers"
    output_pool: torch.Tensor | None = None  # tokens outputs are drawn from; default: all but the noise token
    # the reference code's variant: the noise is an existing token, and outputs come from the whole vocabulary,
    # so the noise token can also be a trigger's correct in-context answer
    outputs_include_noise: bool = False

    def __post_init__(self) -> None:
        v = self.bigram.vocab_size
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"data.alpha must be in [0, 1], got {self.alpha}")
        if self.seq_len < 1:
            raise ValueError(f"data.seq_len must be >= 1, got {self.seq_len}")
        if self.loss_on == "repeat_triggers" and self.seq_len < 3:
            raise ValueError(f"data.seq_len ({self.seq_len}) / data.test_seq_len is too short to hold a repeated trigger "
                             "(trigger, output, trigger: at least 3 tokens), so no position would be trained or scored")
        if self.noise_token is not None and not 0 <= self.noise_token < v:
            raise ValueError(f"data.noise_token must be an existing token id in [0, {v}) or null, got {self.noise_token}")
        if self.outputs_include_noise and self.noise_token is None:
            raise ValueError("data.outputs_include_noise needs data.noise_token to be an existing token id "
                             "(the extra noise id V is not a token that a sequence can hold as an output)")
        candidates = v - (self.noise_token is not None)  # tokens that may be triggers
        if not 1 <= self.n_triggers < candidates:
            raise ValueError(f"data.n_triggers must be in [1, {candidates}) for a vocabulary of {v} tokens, got {self.n_triggers}")
        self.noise_id = v if self.noise_token is None else self.noise_token
        self.vocab_size = v + (self.noise_token is None)
        not_noise = torch.ones(v, dtype=torch.bool)
        if self.noise_token is not None:
            not_noise[self.noise_token] = False
        self.trigger_weights = self.bigram.marginal * not_noise
        self.fixed_triggers = torch.topk(self.trigger_weights, self.n_triggers).indices
        if self.output_pool is None:
            self.output_pool = torch.arange(v) if self.outputs_include_noise else torch.arange(v)[not_noise]
        # Row i of the alias tables samples the successor of token i; the extra noise token is followed by the marginal.
        rows = self.bigram.transitions
        if self.noise_token is None:
            rows = torch.cat([rows, self.bigram.marginal[None]])
        self.accept, self.alias = alias_tables(rows)  # flattened (rows * V,)
        self.marginal_cdf = self.bigram.marginal.double().cumsum(-1).float()

    def global_next_token(self) -> torch.Tensor:
        """(vocab, vocab) float64: the next-token distribution given the current token alone, what a context-free memory
        (the FF's global bigram) can know. The chain's row, except after a fixed trigger: the noise token with
        probability alpha, else an output drawn uniformly from the pool; the extra noise id is followed by the marginal.
        Random triggers change per sequence, so no token is a trigger globally: the chain's rows."""
        v, n = self.bigram.vocab_size, self.vocab_size
        rows = torch.zeros(n, n, dtype=torch.float64)
        rows[:v, :v] = self.bigram.transitions.double()
        if n > v:
            rows[v, :v] = self.bigram.marginal.double()
        if self.trigger_mode == "fixed":
            after = torch.zeros(n, dtype=torch.float64)
            after[self.output_pool] = (1 - self.alpha) / len(self.output_pool)
            after[self.noise_id] += self.alpha
            rows[self.fixed_triggers] = after
        return rows / rows.sum(-1, keepdim=True)

    def tables(self, device: torch.device) -> dict[str, torch.Tensor]:
        """The sampler's tables on ``device`` (copied once per accelerator): sampling runs where the generator lives."""
        names = ("accept", "alias", "marginal_cdf", "fixed_triggers", "trigger_weights", "output_pool")
        if device.type == "cpu":  # the fields themselves (a datamodule may still narrow output_pool)
            return {n: getattr(self, n) for n in names}
        cache = self.__dict__.setdefault("_tables", {})
        if str(device) not in cache:
            cache[str(device)] = {n: getattr(self, n).to(device) for n in names}
        return cache[str(device)]

    def sample(self, batch_size: int, generator: torch.Generator, trigger_free_prefix: int = 0) -> dict[str, torch.Tensor]:
        """A batch: tokens (B, T+1); mask, answer (B, T) for the input positions 0..T-1, on the generator's device
        (a CUDA generator samples on the GPU, where the batch is consumed).

        ``answer`` is the in-context output token at trigger positions and -1 elsewhere; ``mask`` marks the
        positions whose prediction is trained and scored (see ``loss_on``). ``trigger_free_prefix`` = P keeps the
        sequence's triggers out of positions 0..P-1 (redrawing from the chain there), so every (trigger, output) pair
        sits beyond P: the length-generalisation placement "beyond the training length".
        """
        b, t = batch_size, self.seq_len
        g = generator
        dev = g.device
        tab = self.tables(dev)
        accept, alias = tab["accept"], tab["alias"]
        if self.trigger_mode == "fixed":
            triggers = tab["fixed_triggers"].expand(b, -1)
        else:
            triggers = torch.multinomial(tab["trigger_weights"].expand(b, -1), self.n_triggers, generator=g)
        pool = tab["output_pool"]
        outputs = pool[torch.randint(len(pool), (b, self.n_triggers), generator=g, device=dev)]
        # position-major (T+1, B) so that each step reads and writes contiguous memory
        v = self.bigram.vocab_size
        column = torch.randint(v, (t + 1, b), generator=g, device=dev)  # alias method: a uniform column, then a coin
        coin = torch.rand(t + 1, b, generator=g, device=dev)
        noisy = torch.rand(t + 1, b, generator=g, device=dev) < self.alpha
        cols = torch.empty(t + 1, b, dtype=torch.long, device=dev)
        first = torch.searchsorted(tab["marginal_cdf"], torch.rand(b, generator=g, device=dev))
        cols[0] = first.clamp_max_(v - 1)
        if trigger_free_prefix > 0:
            self._avoid_triggers(cols[0], None, triggers, g)
        if self.n_triggers == 1:  # the common case, without the (B, k) match
            after = torch.where(noisy, self.noise_id, outputs[:, 0])
        for i in range(1, t + 1):
            prev = cols[i - 1]
            cell = prev * v + column[i]
            nxt = torch.where(coin[i] < accept[cell], column[i], alias[cell])
            if i < trigger_free_prefix:
                nxt = self._avoid_triggers(nxt, prev, triggers, g)
            if self.n_triggers == 1:
                torch.where(prev == triggers[:, 0], after[i], nxt, out=cols[i])
            else:
                match = prev[:, None] == triggers
                follow = torch.where(noisy[i], self.noise_id, (match * outputs).sum(-1))
                torch.where(match.any(-1), follow, nxt, out=cols[i])
        tokens = cols.T.contiguous()
        mask, answer = self.positions(tokens[:, :-1], triggers, outputs)
        return {"tokens": tokens, "mask": mask, "answer": answer}

    def _avoid_triggers(self, nxt: torch.Tensor, prev: torch.Tensor | None, triggers: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Redraw (from the chain's row of ``prev``, or the marginal) the entries of ``nxt`` that are a trigger of their
        sequence, until none is: the chain conditioned on avoiding the triggers."""
        v, dev = self.bigram.vocab_size, nxt.device
        tab = self.tables(dev)
        for _ in range(1000):
            bad = (nxt[:, None] == triggers).any(-1)
            if not bad.any():
                return nxt
            n = int(bad.sum())
            if prev is None:
                redraw = torch.searchsorted(tab["marginal_cdf"], torch.rand(n, generator=g, device=dev)).clamp_max(v - 1)
            else:
                column = torch.randint(v, (n,), generator=g, device=dev)
                cell = prev[bad] * v + column
                redraw = torch.where(torch.rand(n, generator=g, device=dev) < tab["accept"][cell], column, tab["alias"][cell])
            nxt[bad] = redraw
        raise ValueError("could not draw a trigger-free prefix: the bigram chain almost surely moves to a trigger")

    def positions(self, inputs: torch.Tensor, triggers: torch.Tensor, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        match = inputs[:, :, None] == triggers[:, None, :]  # (B, T, k)
        is_trigger = match.any(-1)
        answer = torch.where(is_trigger, (match * outputs[:, None, :]).sum(-1), -1)
        if self.loss_on == "all":
            mask = torch.ones_like(is_trigger)
        elif self.loss_on == "all_triggers":
            mask = is_trigger
        else:  # 2nd or later occurrence of the same trigger: only then is the answer in context
            occurrence = (match.cumsum(1) * match).sum(-1)
            mask = occurrence >= 2
        return mask, answer


class DeviceStream(torch.utils.data.IterableDataset):
    """Endless batches sampled on ``device`` (the GPU that consumes them: no worker processes, no copies), ``chunk``
    batches at a time: the sampler's loop over positions then launches its kernels once per chunk, not per batch.

    Chunk c of a rank's stream is seeded by (seed, rank, c, chunk) and holds batches c * chunk .. (c + 1) * chunk - 1,
    so a resumed run (``skip`` batches done) continues where it stopped. The batches have the CPU stream's distribution,
    not its numbers (another seeding of the same sampler); tests/datamodules check the statistics.
    """

    def __init__(self, gen: NoisyRecallGenerator, batch_size: int, seed: int, rank: int = 0, skip: int = 0,
                 device: str | torch.device = "cpu", chunk: int = 16):
        self.gen, self.batch_size, self.seed, self.rank, self.skip = gen, batch_size, seed, rank, skip
        self.device, self.chunk = torch.device(device), chunk

    def __iter__(self):
        g = torch.Generator(device=self.device)
        c, first = divmod(self.skip, self.chunk)
        while True:
            g.manual_seed(stream_seed(self.seed, self.rank, c, self.chunk))
            big = self.gen.sample(self.batch_size * self.chunk, g)
            for j in range(first, self.chunk):
                rows = slice(j * self.batch_size, (j + 1) * self.batch_size)
                yield {k: v[rows] for k, v in big.items()}
            c, first = c + 1, 0


class NoisyRecallStream(torch.utils.data.IterableDataset):
    """Endless batches; the n-th batch of a rank's loader is seeded by (seed, rank, n).

    So every DDP rank has its own stream, no batch repeats, the batches do not depend on the number of
    dataloader workers (worker w of W yields n = skip + w, skip + w + W, ...: the loader's round-robin order), and a
    resumed run continues exactly after the ``skip`` batches it already consumed.
    """

    def __init__(self, gen: NoisyRecallGenerator, batch_size: int, seed: int, rank: int = 0, skip: int = 0):
        self.gen, self.batch_size, self.seed, self.rank, self.skip = gen, batch_size, seed, rank, skip

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        g = torch.Generator()
        n = self.skip + worker
        while True:
            g.manual_seed(stream_seed(self.seed, self.rank, n))
            yield self.gen.sample(self.batch_size, g)
            n += n_workers
