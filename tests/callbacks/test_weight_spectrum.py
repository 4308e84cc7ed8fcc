"""WeightSpectrumLogger's scalar summaries and its choice of matrices."""
import math

import pytest
import torch

from callbacks import WeightSpectrumLogger
from callbacks.weight_spectrum import spectrum_summary
from lightning_modules.laser import singular_values
from tests.callbacks.fixtures import tiny_model_and_data


def test_summaries_of_a_known_spectrum():
    s = singular_values(torch.diag(torch.tensor([3.0, 4.0, 0.0])))
    out = spectrum_summary(s)
    p = torch.tensor([4 / 7, 3 / 7])
    assert out["top"] == pytest.approx(4.0)
    assert out["stable_rank"] == pytest.approx(25 / 16)  # ||W||_F^2 / ||W||_2^2
    assert out["nuclear_norm"] == pytest.approx(7.0)
    assert out["effective_rank"] == pytest.approx(math.exp(-(p * p.log()).sum().item()))
    assert spectrum_summary(singular_values(torch.eye(5)))["effective_rank"] == pytest.approx(5.0)
    assert spectrum_summary(singular_values(torch.zeros(3, 4))) == {"top": 0.0, "stable_rank": 0.0, "effective_rank": 0.0, "nuclear_norm": 0.0}


def test_default_matrices_are_the_trainable_ones_and_patterns_select():
    model, dm = tiny_model_and_data()
    names = set(WeightSpectrumLogger().matrices(model))
    assert "layers.0.ff.w1" in names and "layers.1.attn.wo" in names
    assert not names & {"tok_emb", "unemb", "pos_emb"}  # frozen in the default model
    assert set(WeightSpectrumLogger(targets=["layers.*.ff.w2"]).matrices(model)) == {"layers.0.ff.w2", "layers.1.ff.w2"}
    with pytest.raises(ValueError, match="'layers.1.ff.w3' matches no matrix"):
        WeightSpectrumLogger(targets=["layers.1.ff.w3"]).check_config(model, dm)
    with pytest.raises(ValueError, match="every_n_steps"):
        WeightSpectrumLogger(every_n_steps=0)
