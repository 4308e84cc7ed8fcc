import numpy as np
import pytest
import torch
from scipy import stats
from torch.utils.data import DataLoader

from datamodules.bigram import BigramModel, SyntheticBigram
from datamodules.generator import NoisyRecallGenerator, NoisyRecallStream, alias_tables


@pytest.fixture(scope="module")
def bigram() -> BigramModel:
    return SyntheticBigram(vocab_size=16, seed=3).build()


def sample(gen, n=512, seed=0):
    return gen.sample(n, torch.Generator().manual_seed(seed))


def test_alias_tables_reproduce_row_probabilities(bigram):
    accept, alias = alias_tables(bigram.transitions)
    v = bigram.vocab_size
    accept, alias = accept.view(v, v).double(), alias.view(v, v)
    # P(token j | row) = (accept[row, j] + sum over columns c aliased to j of (1 - accept[row, c])) / V
    probs = accept.clone()
    probs.scatter_add_(1, alias, 1 - accept)
    torch.testing.assert_close(probs / v, bigram.transitions.double(), atol=1e-6, rtol=0)


def test_noise_rate_after_triggers_is_alpha_and_otherwise_the_output_follows(bigram):
    gen = NoisyRecallGenerator(bigram, seq_len=128, alpha=0.3)
    b = sample(gen, 1024)
    tokens, answer = b["tokens"], b["answer"]
    at_trigger = answer >= 0
    nxt = tokens[:, 1:][at_trigger]
    noise = nxt == gen.noise_id
    n = int(at_trigger.sum())
    assert n > 5000
    # binomial test: the observed noise rate is consistent with alpha
    assert stats.binomtest(int(noise.sum()), n, 0.3).pvalue > 1e-3
    assert abs(noise.float().mean().item() - 0.3) < 0.03
    # without noise, the trigger is always followed by its own in-context output token
    assert torch.equal(nxt[~noise], answer[at_trigger][~noise])
    # outputs are fixed per sequence: every occurrence of the trigger in a row has the same answer
    for row in range(8):
        assert answer[row][answer[row] >= 0].unique().numel() <= 1


def test_other_transitions_follow_the_bigram_matrix(bigram):
    gen = NoisyRecallGenerator(bigram, seq_len=256, alpha=0.5)
    tokens = sample(gen, 512)["tokens"]
    prev, nxt = tokens[:, :-1].flatten(), tokens[:, 1:].flatten()
    v = bigram.vocab_size
    keep = (prev != gen.fixed_triggers[0]) & (prev != gen.noise_id)
    counts = torch.zeros(v + 1, v).index_put_((prev[keep], nxt[keep]), torch.ones(int(keep.sum())), accumulate=True)
    checked = 0
    for row in range(v):
        n = counts[row].sum()
        if row == gen.fixed_triggers[0] or n < 2000:
            continue
        expected = (bigram.transitions[row].double() * n).numpy()
        observed = counts[row].double().numpy()
        big = expected >= 5  # chi-square validity; the rest is pooled into one cell
        obs = np.append(observed[big], observed[~big].sum())
        exp = np.append(expected[big], expected[~big].sum())
        obs, exp = obs[exp > 0], exp[exp > 0]
        assert stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue > 1e-4, f"row {row}"
        checked += 1
    assert checked >= 5
    # power check on a well-visited row (the second most visited): the neighbouring row's distribution is rejected
    row = int(counts[:v].sum(1).argsort(descending=True)[1])
    n = counts[row].sum().item()
    other = bigram.transitions[(row + 1) % v].double().numpy() + 1e-12
    assert stats.chisquare(counts[row].double().numpy(), other / other.sum() * n).pvalue < 1e-6


def test_extra_noise_token_is_followed_by_the_marginal(bigram):
    gen = NoisyRecallGenerator(bigram, seq_len=256, alpha=0.9)
    tokens = sample(gen, 512)["tokens"]
    after_noise = tokens[:, 1:][tokens[:, :-1] == gen.noise_id]
    assert gen.vocab_size == bigram.vocab_size + 1 and gen.noise_id == bigram.vocab_size
    assert after_noise.numel() > 10000 and (after_noise < bigram.vocab_size).all()
    freq = torch.bincount(after_noise, minlength=bigram.vocab_size).double() / after_noise.numel()
    assert (freq - bigram.marginal.double()).abs().max() < 0.02


def test_loss_mask_marks_second_and_later_trigger_occurrences(bigram):
    gen = NoisyRecallGenerator(bigram, seq_len=64, alpha=0.5)
    b = sample(gen, 64)
    inputs, mask = b["tokens"][:, :-1], b["mask"]
    trig = int(gen.fixed_triggers[0])
    for row in range(64):
        pos = (inputs[row] == trig).nonzero().flatten().tolist()
        assert mask[row].nonzero().flatten().tolist() == pos[1:]
    all_trig = NoisyRecallGenerator(bigram, seq_len=64, loss_on="all_triggers").sample(8, torch.Generator().manual_seed(0))
    assert torch.equal(all_trig["mask"], all_trig["tokens"][:, :-1] == trig)


def test_k_random_triggers_existing_noise_token_and_ood_pool(bigram):
    gen = NoisyRecallGenerator(bigram, seq_len=128, n_triggers=3, alpha=0.4, trigger_mode="random", noise_token=5)
    assert gen.vocab_size == bigram.vocab_size and gen.noise_id == 5
    b = sample(gen, 256)
    tokens, answer = b["tokens"], b["answer"]
    at = answer >= 0
    nxt = tokens[:, 1:][at]
    noise = nxt == 5
    assert abs(noise.float().mean().item() - 0.4) < 0.04
    assert torch.equal(nxt[~noise], answer[at][~noise])
    assert not (answer == 5).any()  # the noise token is never an output
    pool = torch.arange(0, bigram.vocab_size, 2)
    ood = NoisyRecallGenerator(bigram, seq_len=64, output_pool=pool).sample(64, torch.Generator().manual_seed(1))
    assert torch.isin(ood["answer"][ood["answer"] >= 0], pool).all()


def test_sampling_is_deterministic_from_the_seed(bigram):
    gen = NoisyRecallGenerator(bigram, seq_len=32)
    a, b, c = sample(gen, 16, 7), sample(gen, 16, 7), sample(gen, 16, 8)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["tokens"], c["tokens"])


@pytest.mark.parametrize(
    "kwargs, field",
    [({"alpha": 1.5}, "data.alpha"), ({"alpha": -0.1}, "data.alpha"), ({"n_triggers": 16}, "data.n_triggers"),
     ({"seq_len": 0}, "data.seq_len"), ({"noise_token": 99}, "data.noise_token")],
)
def test_impossible_values_name_the_field(bigram, kwargs, field):
    with pytest.raises(ValueError, match=field):
        NoisyRecallGenerator(bigram, **{"seq_len": 8, **kwargs})


def _first_batches(stream, n, num_workers=0):
    it = iter(DataLoader(stream, batch_size=None, num_workers=num_workers))
    return [next(it)["tokens"] for _ in range(n)]


def test_streams_differ_per_rank_and_worker_never_repeat_and_resume_exactly(bigram):
    gen = NoisyRecallGenerator(bigram, seq_len=16)
    rank0 = _first_batches(NoisyRecallStream(gen, 4, seed=1, rank=0), 6)
    rank1 = _first_batches(NoisyRecallStream(gen, 4, seed=1, rank=1), 6)
    again = _first_batches(NoisyRecallStream(gen, 4, seed=1, rank=0), 6)
    assert all(torch.equal(x, y) for x, y in zip(rank0, again))
    everything = rank0 + rank1
    assert len({x.numpy().tobytes() for x in everything}) == len(everything)
    # two workers give the same batches as none, and skipping k batches continues the same sequence
    two = _first_batches(NoisyRecallStream(gen, 4, seed=1), 6, num_workers=2)
    assert all(torch.equal(x, y) for x, y in zip(rank0, two))
    resumed = _first_batches(NoisyRecallStream(gen, 4, seed=1, skip=3), 3, num_workers=2)
    assert all(torch.equal(x, y) for x, y in zip(two[3:], resumed))


def test_the_reference_noise_variant_noise_is_a_token_and_outputs_cover_the_whole_vocabulary(bigram):
    gen = NoisyRecallGenerator(bigram, seq_len=64, alpha=0.5, noise_token=2, outputs_include_noise=True)
    assert gen.vocab_size == 16 and gen.noise_id == 2  # no extra token id
    b = sample(gen, 4096, seed=1)
    tokens, answer = b["tokens"], b["answer"]
    at_trigger = answer >= 0
    nxt = tokens[:, 1:][at_trigger]
    # the noise follows a trigger with probability alpha: positions where the noise is not also the answer
    not_noise_answer = answer[at_trigger] != 2
    noise_rate = (nxt[not_noise_answer] == 2).float().mean().item()
    assert stats.binomtest(int((nxt[not_noise_answer] == 2).sum()), int(not_noise_answer.sum()), 0.5).pvalue > 1e-3
    assert abs(noise_rate - 0.5) < 0.03
    # outputs (one per sequence) are uniform over all 16 tokens, the noise token included
    outputs = torch.tensor([row[row >= 0][0] for row in answer if (row >= 0).any()])
    counts = torch.bincount(outputs, minlength=16).numpy()
    assert counts[2] > 0 and stats.chisquare(counts).pvalue > 1e-3
    with pytest.raises(ValueError, match="outputs_include_noise needs data.noise_token"):
        NoisyRecallGenerator(bigram, seq_len=64, outputs_include_noise=True)


@pytest.mark.parametrize("mode", ["fixed", "random"])
def test_a_trigger_free_prefix_puts_every_pair_beyond_it(bigram, mode):
    gen = NoisyRecallGenerator(bigram, seq_len=96, alpha=0.0, trigger_mode=mode)
    b = gen.sample(256, torch.Generator().manual_seed(0), trigger_free_prefix=48)
    answer = b["answer"]
    assert not (answer[:, :48] >= 0).any()  # no trigger among the first 48 inputs
    assert (answer[:, 48:] >= 0).sum() > 256 and b["mask"][:, 48:].sum() > 50  # pairs, and repeats, beyond
    # beyond the prefix it is the ordinary chain: without a prefix the same generator puts triggers early too
    assert (gen.sample(256, torch.Generator().manual_seed(0))["answer"][:, :48] >= 0).any()


def stream_counts(stream, n_batches: int, gen) -> dict:
    """Trigger, noise and output-token counts over the first ``n_batches`` of a stream."""
    it = iter(stream)
    out = {"positions": 0, "after_trigger": 0, "noise": 0, "outputs": np.zeros(gen.vocab_size), "scored": 0}
    for _ in range(n_batches):
        b = next(it)
        at = b["answer"] >= 0
        nxt = b["tokens"][:, 1:][at]
        out["positions"] += b["answer"].numel()
        out["after_trigger"] += int(at.sum())
        out["noise"] += int((nxt == gen.noise_id).sum())
        # each sequence's own output token, once (its occurrences are not independent draws)
        first = b["answer"].masked_fill(~at, -1).max(1).values
        out["outputs"] += np.bincount(first[first >= 0].numpy(), minlength=gen.vocab_size)
        out["scored"] += int(b["mask"].sum())
    return out


def test_the_device_stream_has_the_cpu_streams_statistics_and_resumes_where_it_stopped(bigram):
    from datamodules.generator import DeviceStream

    gen = NoisyRecallGenerator(bigram, seq_len=64, alpha=0.4)
    cpu = stream_counts(NoisyRecallStream(gen, 64, seed=1), 48, gen)
    dev = stream_counts(DeviceStream(gen, 64, seed=1, device="cpu", chunk=8), 48, gen)
    for kind in ("after_trigger", "scored"):  # how often a trigger comes, and comes again (two-sample binomial)
        table = [[cpu[kind], cpu["positions"] - cpu[kind]], [dev[kind], dev["positions"] - dev[kind]]]
        assert stats.chi2_contingency(table).pvalue > 1e-3, kind
    table = [[cpu["noise"], cpu["after_trigger"] - cpu["noise"]], [dev["noise"], dev["after_trigger"] - dev["noise"]]]
    assert stats.chi2_contingency(table).pvalue > 1e-3  # the noise rate after triggers
    used = (cpu["outputs"] + dev["outputs"]) > 0
    assert stats.chi2_contingency(np.stack([cpu["outputs"][used], dev["outputs"][used]])).pvalue > 1e-3  # the outputs
    assert abs(dev["noise"] / dev["after_trigger"] - 0.4) < 0.02
    # resumable: skipping k batches continues exactly at batch k, across chunk boundaries
    whole = iter(DeviceStream(gen, 8, seed=2, chunk=4))
    batches = [next(whole) for _ in range(11)]
    for skip in (3, 4, 9):
        resumed = next(iter(DeviceStream(gen, 8, seed=2, skip=skip, chunk=4)))
        assert torch.equal(resumed["tokens"], batches[skip]["tokens"]), skip
    assert torch.equal(batches[0]["tokens"], next(iter(DeviceStream(gen, 8, seed=2, chunk=4)))["tokens"])


def test_a_fit_can_sample_on_the_training_device(tmp_path, monkeypatch):
    from main import main
    from tests.pipeline.test_cli import TINY, only_run_dir
    import json

    monkeypatch.setenv("WANDB_MODE", "disabled")
    main(["fit", *TINY, "--data.init_args.sample_on", "device", "--data.init_args.chunk", "4", "--trainer.callbacks=[]",
          "--trainer.default_root_dir", str(tmp_path)])
    summary = json.loads((only_run_dir(tmp_path) / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["global_step"] == 6
