"""The 95% intervals of the recall metrics over test sequences (lightning_modules/metrics.py), against a brute-force
bootstrap over sequences in float64, and their states' sums split across batches (what DDP reduces)."""
import numpy as np
import pytest
import torch

from lightning_modules.metrics import TriggerRecallMetrics


def batch(seed: int, sequences: int = 300, length: int = 12, vocab: int = 7):
    g = torch.Generator().manual_seed(seed)
    # sequences differ in how sure the model is (a shared context), so positions of one sequence are correlated
    sharp = torch.rand(sequences, 1, 1, generator=g, dtype=torch.float64) * 4
    logits = torch.randn(sequences, length, vocab, generator=g, dtype=torch.float64) * sharp
    targets = torch.randint(0, vocab, (sequences, length), generator=g)
    mask = torch.rand(sequences, length, generator=g) < 0.3
    answer = torch.where(torch.rand(sequences, length, generator=g) < 0.8, targets, -1)
    return logits, targets, answer, mask


def per_sequence(logits, targets, answer, mask, noise_id):
    """(y_i, m_i) of each metric for each sequence, by loops."""
    out = {k: ([], []) for k in ("p_correct", "p_noise", "acc", "loss")}
    for i in range(logits.shape[0]):
        sums, m, m_loss = dict.fromkeys(out, 0.0), 0, 0
        for t in range(logits.shape[1]):
            if not mask[i, t]:
                continue
            p = torch.softmax(logits[i, t], -1)
            sums["loss"] += -float(torch.log(p[targets[i, t]]))
            m_loss += 1
            if answer[i, t] >= 0:
                sums["p_correct"] += float(p[answer[i, t]])
                sums["p_noise"] += float(p[noise_id])
                sums["acc"] += float(int(p.argmax()) == int(answer[i, t]))
                m += 1
        for k in out:
            out[k][0].append(sums[k])
            out[k][1].append(m_loss if k == "loss" else m)
    return {k: (np.array(y), np.array(m, dtype=float)) for k, (y, m) in out.items()}


def test_the_interval_has_the_width_of_a_bootstrap_over_sequences():
    logits, targets, answer, mask = batch(0)
    metric = TriggerRecallMetrics(noise_id=3).double()
    metric.update(logits, targets, answer, mask)
    means, intervals = metric.compute(), metric.computed_intervals
    assert metric.computed_sequences == 300
    rng = np.random.default_rng(0)
    draws = rng.integers(0, 300, size=(4000, 300))  # resample whole sequences
    for name, (y, m) in per_sequence(logits, targets, answer, mask, 3).items():
        assert float(means[name]) == pytest.approx(y.sum() / m.sum(), rel=1e-6)  # the metric scores in float32
        boot = y[draws].sum(1) / m[draws].sum(1)
        low, high = intervals[name]
        half = (high - low) / 2
        if name != "loss":  # clipping to [0, 1] does not bite at these values
            assert 0 < low < high < 1
        assert half == pytest.approx(1.96 * boot.std(), rel=0.04), name  # positions as units would be 5-17% off
        assert (low + high) / 2 == pytest.approx(y.sum() / m.sum(), rel=1e-6)


def test_the_states_are_sums_so_two_halves_give_the_same_interval():
    logits, targets, answer, mask = batch(1, sequences=40)
    whole, halves = TriggerRecallMetrics(noise_id=2).double(), TriggerRecallMetrics(noise_id=2).double()
    whole.update(logits, targets, answer, mask)
    for part in (slice(0, 17), slice(17, 40)):
        halves.update(logits[part], targets[part], answer[part], mask[part])
    whole.compute(), halves.compute()
    for name, ci in whole.computed_intervals.items():
        assert halves.computed_intervals[name] == pytest.approx(ci, rel=1e-12)


def test_one_sequence_has_no_interval():
    logits, targets, answer, mask = batch(2, sequences=1)
    mask[:] = True
    metric = TriggerRecallMetrics(noise_id=0).double()
    metric.update(logits, targets, answer, mask)
    metric.compute()
    assert metric.computed_intervals["p_noise"] is None and metric.computed_sequences == 1
