"""GradientNoise: the paper's explanation measured. At initialisation on the default noisy task, the per-example
gradients towards the noise token are more coherent (higher signal-to-noise ratio) for the feed-forward than for
any attention matrix."""
import json

import pytest
import torch

from callbacks.gradient_noise import GradientNoise, default_groups, noise_margin, projected_gradients
from main import main
from tests.callbacks.fixtures import tiny_model_and_data
from tests.pipeline.test_cli import only_run_dir

AT_INIT = """
trainer:
  callbacks:
    - class_path: callbacks.GradientNoise
      init_args: {at_steps: [0], n_sequences: 256}
"""


@pytest.mark.parametrize("seed", [0, 1])
def test_at_initialisation_the_feed_forward_snr_exceeds_every_attention_matrix(tmp_path, seed):
    (tmp_path / "gn.yaml").write_text(AT_INIT)
    main([
        "fit", "--config", "configs/noisy.yaml", "--config", str(tmp_path / "gn.yaml"), "--seed_everything", str(seed),
        "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0", "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path), "--report", "false",
    ])
    stats = json.loads((only_run_dir(tmp_path) / "summary.json").read_text())["callbacks"]["gradient_noise"]["0"]
    ff = {g: s["snr"] for g, s in stats.items() if ".ff" in g}
    attn = {g: s["snr"] for g, s in stats.items() if ".attn." in g}
    assert set(ff) == {"layers.1.ff"} and len(attn) == 8  # wq wk wv wo in both layers
    assert all(s["n"] >= 200 for s in stats.values())  # sequences with a scored trigger
    # descent moves every group towards the noise token on average (the data says "noise" half the time) ...
    assert all(s["mean"] > 0 for s in stats.values())
    # ... but most consistently for the feed-forward: measured 3.0-3.3 against at most 2.6-2.8, a ratio of 1.15-1.20 (seeds 0-5)
    assert min(ff.values()) > 1.05 * max(attn.values()), (ff, attn)


def test_without_noise_in_the_data_the_feed_forward_is_not_pushed_towards_it():
    model, dm = tiny_model_and_data()
    groups = GradientNoise().groups(model)
    noisy = dm.gen.sample(64, torch.Generator().manual_seed(0))
    clean = dm.clean_generator().sample(64, torch.Generator().manual_seed(0))
    with_noise = projected_gradients(model, noisy, groups, dm.noise_id)["layers.1.ff"].mean()
    without = projected_gradients(model, clean, groups, dm.noise_id)["layers.1.ff"].mean()
    assert with_noise > 0 and without < 0.1 * with_noise


@pytest.mark.parametrize("positional", ["absolute", "relative"])
def test_the_vmapped_projections_are_each_sequences_own_backward_pass(positional):
    """One vmapped pass per chunk against the definition: a backward pass of the module's own training loss per
    sequence, projected by hand on the noise direction."""
    model, dm = tiny_model_and_data(positional=positional)
    groups = GradientNoise().groups(model)
    batch = dm.gen.sample(24, torch.Generator().manual_seed(3))
    params = [p for ps in groups.values() for p in ps]
    examples = batch["mask"].any(1).nonzero().flatten().tolist()
    with torch.enable_grad():
        margin = noise_margin(model.net(batch["tokens"][examples, :-1]), batch["mask"][examples], dm.noise_id)
        direction = dict(zip(params, torch.autograd.grad(margin, params)))
        expected = {g: [] for g in groups}
        for e in examples:
            grads = dict(zip(params, torch.autograd.grad(model.loss({k: v[e : e + 1] for k, v in batch.items()}), params)))
            for g, ps in groups.items():
                norm = sum(float((direction[p].double() ** 2).sum()) for p in ps) ** 0.5
                expected[g].append(-sum(float((grads[p].double() * direction[p].double()).sum()) for p in ps) / norm)
    one_pass = projected_gradients(model, batch, groups, dm.noise_id)
    chunked = projected_gradients(model, batch, groups, dm.noise_id, max_floats=1)  # one sequence per chunk
    assert len(examples) >= 15
    for g in groups:
        torch.testing.assert_close(one_pass[g], torch.tensor(expected[g], dtype=torch.float64), rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(chunked[g], one_pass[g], rtol=1e-6, atol=1e-9)


def test_default_groups_merge_each_feed_forward_and_skip_frozen_matrices():
    model, _ = tiny_model_and_data()
    groups = default_groups(model.net)
    assert groups["layers.0.ff"] == ["layers.0.ff.w1", "layers.0.ff.w2"]
    assert groups["layers.1.attn.wk"] == ["layers.1.attn.wk"]
    assert "tok_emb" not in groups and "unemb" not in groups


def test_bad_arguments_and_unknown_patterns():
    with pytest.raises(ValueError, match="n_sequences"):
        GradientNoise(n_sequences=1)
    with pytest.raises(ValueError, match="GradientNoise needs a model with loss"):
        GradientNoise().check_config(torch.nn.Linear(2, 2), None)
    model, dm = tiny_model_and_data()
    with pytest.raises(ValueError, match="'layers.0.mlp.\\*' matches no matrix"):
        GradientNoise(groups={"ff": ["layers.0.mlp.*"]}).check_config(model, dm)
