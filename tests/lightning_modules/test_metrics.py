import math

import pytest
import torch

from lightning_modules.metrics import TriggerRecallMetrics


def test_metric_arithmetic_on_hand_set_logits():
    # vocabulary of 3, noise token 2; two scored positions and one masked-out position
    logits = torch.log(torch.tensor([[[0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.9, 0.05, 0.05]]]))
    targets = torch.tensor([[2, 0, 1]])
    answer = torch.tensor([[0, 0, 1]])
    mask = torch.tensor([[True, True, False]])
    m = TriggerRecallMetrics(noise_id=2)
    m.update(logits, targets, answer, mask)
    out = {k: v.item() for k, v in m.compute().items()}
    assert out["p_correct"] == pytest.approx((0.2 + 0.6) / 2)
    assert out["p_noise"] == pytest.approx((0.5 + 0.1) / 2)
    assert out["acc"] == pytest.approx(0.5)  # argmax is the noise at the first position, the answer at the second
    assert out["loss"] == pytest.approx(-(math.log(0.5) + math.log(0.6)) / 2)


def test_positions_without_an_answer_count_for_the_loss_only_and_updates_accumulate():
    logits = torch.zeros(1, 2, 4)  # uniform
    m = TriggerRecallMetrics(noise_id=3)
    m.update(logits, torch.tensor([[1, 2]]), torch.tensor([[-1, 2]]), torch.tensor([[True, True]]))
    m.update(logits, torch.tensor([[1, 2]]), torch.tensor([[-1, 0]]), torch.tensor([[False, True]]))
    out = m.compute()
    assert out["p_correct"].item() == pytest.approx(0.25) and out["p_noise"].item() == pytest.approx(0.25)
    assert out["loss"].item() == pytest.approx(math.log(4))
    assert int(m.n_answer) == 2 and int(m.n_loss) == 3


def test_p_global_is_the_probability_of_the_triggers_global_bigram_answer():
    logits = torch.log(torch.tensor([[[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]]]))
    inputs = torch.tensor([[1, 0]])  # the triggers at the two scored positions
    m = TriggerRecallMetrics(noise_id=2, global_answer=torch.tensor([2, 1, 0]))  # 0 -> 2, 1 -> 1, 2 -> 0
    m.update(logits, torch.tensor([[0, 0]]), torch.tensor([[0, 0]]), torch.tensor([[True, True]]), inputs)
    assert m.compute()["p_global"].item() == pytest.approx((0.3 + 0.1) / 2)  # P(1) after trigger 1, P(2) after 0
    assert "p_global" not in TriggerRecallMetrics(noise_id=2).compute()


def test_a_mean_over_no_scored_position_is_undefined_not_zero():
    m = TriggerRecallMetrics(noise_id=2)
    m.update(torch.zeros(1, 3, 3), torch.tensor([[0, 1, 2]]), torch.tensor([[-1, -1, -1]]), torch.tensor([[False] * 3]))
    out = m.compute()
    assert all(math.isnan(v.item()) for v in out.values()), out
