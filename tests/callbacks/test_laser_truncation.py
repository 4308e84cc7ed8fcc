"""LaserTruncation in real Lightning fits: the rank at step s, once vs project, epochs, before/after metrics, resume."""
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from callbacks import LaserTruncation, WeightSpectrumLogger
from tests.callbacks.fixtures import numerical_rank, tiny_model_and_data, tiny_trainer

W2 = "layers.1.ff.w2"  # (16, 64) in the tiny model: full rank 16


def spectrum_ranks(root) -> dict[int, int]:
    z = np.load(root / "spectra.npz")
    return {int(step): int((s > 1e-5 * max(s.max(), 1.0)).sum()) for step, s in zip(z["steps"], z[W2])}


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="exactly one of rho or rank"):
        LaserTruncation([W2], rho=0.1, rank=2, at_steps=[1])
    with pytest.raises(ValueError, match="rho must be in"):
        LaserTruncation([W2], rho=1.5, at_steps=[1])
    with pytest.raises(ValueError, match="exactly one of at_steps or at_epochs"):
        LaserTruncation([W2], rank=1)
    with pytest.raises(ValueError, match="mode"):
        LaserTruncation([W2], rank=1, at_steps=[1], mode="sometimes")
    model, dm = tiny_model_and_data()
    with pytest.raises(ValueError, match="'layers.9.ff.w2' matches no matrix"):
        LaserTruncation(["layers.9.ff.w2"], rank=1, at_steps=[1]).check_config(model, dm)
    with pytest.raises(ValueError, match="exceeds the full rank 16"):
        LaserTruncation([W2], rank=17, at_steps=[1]).check_config(model, dm)


def test_once_truncates_at_step_s_then_trains_freely(tmp_path):
    model, dm = tiny_model_and_data()
    laser = LaserTruncation([W2], rho=0.25, at_steps=[3])
    tiny_trainer(tmp_path, [laser, WeightSpectrumLogger(every_n_steps=1)], max_steps=6).fit(model, dm)
    ranks = spectrum_ranks(tmp_path)
    assert ranks[2] == 16 and ranks[3] == 4  # floor(0.25 * 16) at step 3 exactly
    assert ranks[4] == 16  # `once`: the next optimizer step leaves the rank-4 subspace again
    assert laser.done == [3] and [e["step"] for e in laser.events] == [3]
    assert laser.events[0]["ranks"] == {W2: 4}


def test_project_keeps_the_rank_for_the_rest_of_training(tmp_path):
    model, dm = tiny_model_and_data()
    laser = LaserTruncation([W2, "layers.0.ff.w1"], rank=2, at_steps=[2], mode="project")
    tiny_trainer(tmp_path, [laser, WeightSpectrumLogger(every_n_steps=1)], max_steps=6).fit(model, dm)
    ranks = spectrum_ranks(tmp_path)
    assert ranks[1] == 16 and all(ranks[s] == 2 for s in range(2, 7))
    assert numerical_rank(model.net.layers[0].ff.w1) == 2
    assert len(laser.events) == 1  # projections are not new truncation events


def test_at_step_zero_and_at_an_epoch_start(tmp_path):
    model, dm = tiny_model_and_data()
    laser = LaserTruncation([W2], rank=0, at_steps=[0], evaluate=False)
    tiny_trainer(tmp_path / "a", [laser], max_steps=1).fit(model, dm)
    assert laser.events[0]["global_step"] == 0

    model, dm = tiny_model_and_data()
    laser = LaserTruncation([W2], rank=1, at_epochs=[1], mode="project")
    # 3 batches per epoch: epoch 1 starts after optimizer step 3, whose spectrum was logged at the end of epoch 0
    tiny_trainer(tmp_path / "b", [laser, WeightSpectrumLogger(every_n_steps=1)], max_steps=5, limit_train_batches=3).fit(model, dm)
    assert [(e["epoch"], e["global_step"]) for e in laser.events] == [(1, 3)]
    ranks = spectrum_ranks(tmp_path / "b")
    assert ranks[3] == 16 and ranks[4] == ranks[5] == 1


def test_metrics_right_before_and_after_the_truncation(tmp_path):
    model, dm = tiny_model_and_data()
    laser = LaserTruncation([W2], rank=0, at_steps=[4])
    tiny_trainer(tmp_path, [laser], max_steps=4).fit(model, dm)
    (event,) = laser.events
    assert set(event["before"]) == set(event["after"]) == {"p_correct", "p_noise", "acc", "loss"}
    assert event["before"]["loss"] != pytest.approx(event["after"]["loss"])
    # `after` is the model as it is now (truncated at the last step, nothing trained since)
    now = model.evaluate(dm.val_dataloader())
    assert all(now[k] == pytest.approx(event["after"][k], abs=1e-9) for k in now)
    assert model.net.layers[1].ff.w2.abs().max() == 0


def test_resume_before_s_truncates_once_after_s_never_again(tmp_path):
    def fit(root, ckpt_path=None):
        model, dm = tiny_model_and_data()
        laser = LaserTruncation([W2], rank=2, at_steps=[5])
        ckpt = ModelCheckpoint(dirpath=root / "ckpt", filename="{step}", every_n_train_steps=2, save_top_k=-1)
        callbacks = [laser, WeightSpectrumLogger(every_n_steps=1), ckpt]
        tiny_trainer(root, callbacks, max_steps=8, enable_checkpointing=True).fit(model, dm, ckpt_path=ckpt_path)
        return laser, model.net.state_dict()

    laser, uninterrupted = fit(tmp_path / "a")
    assert [e["step"] for e in laser.events] == [5]

    before, weights = fit(tmp_path / "b", tmp_path / "a" / "ckpt" / "step=4.ckpt")
    assert [e["step"] for e in before.events] == [5] and before.done == [5]
    assert spectrum_ranks(tmp_path / "b")[5] == 2
    for name, w in uninterrupted.items():  # the resumed run is the uninterrupted run
        torch.testing.assert_close(weights[name], w, rtol=0, atol=1e-6, msg=name)
    # the spectra of steps 0-4 came from the checkpoint; the resumed run added 5-8
    assert np.load(tmp_path / "b" / "spectra.npz")["steps"].tolist() == list(range(9))

    after, weights = fit(tmp_path / "c", tmp_path / "a" / "ckpt" / "step=6.ckpt")
    assert after.events == [] and after.done == [5]
    for name, w in uninterrupted.items():
        torch.testing.assert_close(weights[name], w, rtol=0, atol=1e-6, msg=name)
