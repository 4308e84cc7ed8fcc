"""AttentionProbe's measurements on hand-built attention patterns and a real model."""
import pytest
import torch
import torch.nn.functional as F

from callbacks import AttentionProbe
from callbacks.attention_probe import ff_noise_margins, induction_mass
from lightning_modules.attribution import attention_patterns
from tests.callbacks.fixtures import tiny_model_and_data

NOISE = 9


def test_induction_mass_splits_attention_after_earlier_triggers_by_what_they_hold():
    # trigger 5 at positions 1, 4 and 7; after it: output 3 at 2, noise at 5; query: the trigger at 7
    tokens = torch.tensor([[0, 5, 3, 1, 5, NOISE, 2, 5]])
    answer = torch.full_like(tokens, -1)
    answer[0, [1, 4, 7]] = 3
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    mask[0, 7] = True
    pattern = torch.zeros(1, 8, 8)
    pattern[0, 7, 2], pattern[0, 7, 5], pattern[0, 7, 6], pattern[0, 7, 7] = 0.3, 0.5, 0.15, 0.05
    assert induction_mass(pattern, tokens, answer, mask, NOISE) == pytest.approx({"to_output": 0.3, "to_noise": 0.5})
    # a query with no earlier occurrence of its trigger attends to nothing that counts
    mask[0, 7], mask[0, 1] = False, True
    pattern[0, 1, 0], pattern[0, 1, 1] = 0.5, 0.5
    assert induction_mass(pattern, tokens, answer, mask, NOISE) == {"to_output": 0.0, "to_noise": 0.0}


def test_patterns_and_margins_match_a_direct_computation():
    model, dm = tiny_model_and_data()
    net = model.net
    tokens = torch.randint(dm.vocab_size, (2, 10))
    patterns = attention_patterns(net, tokens)
    x0 = net.tok_emb[tokens] + net.pos_emb[:10]
    torch.testing.assert_close(patterns[0], net.layers[0].attn.probabilities(x0).mean(1))
    triggers = torch.tensor([1, 4])
    margins = ff_noise_margins(net, triggers, dm.noise_id)
    for i in (0, 1):
        logits = F.linear(net.layers[i].ff(net.tok_emb[triggers]), net.unemb)
        others = torch.cat([logits[:, : dm.noise_id], logits[:, dm.noise_id + 1 :]], 1)
        assert margins[i] == pytest.approx(float((logits[:, dm.noise_id] - others.max(1).values).mean()), abs=1e-6)


def test_an_ff_that_maps_the_trigger_to_the_noise_token_has_a_positive_margin():
    model, dm = tiny_model_and_data()
    net = model.net
    trigger = dm.gen.fixed_triggers
    with torch.no_grad():  # a linear FF whose output for e_trigger is the noise token's unembedding
        net.layers[1].ff.w1.copy_(torch.eye(64, 16))
        net.layers[1].ff.w2.zero_()
        e = net.tok_emb[trigger[0]]
        net.layers[1].ff.w2[:, :16] = 10 * torch.outer(net.unemb[dm.noise_id], e) / (e @ e.clamp_min(0))
    margin = ff_noise_margins(net, trigger, dm.noise_id)[1]
    assert margin > 1.0
    assert ff_noise_margins(net, trigger, dm.noise_id)[0] < margin


def test_check_rejects_other_models_and_data():
    model, dm = tiny_model_and_data()
    with pytest.raises(ValueError, match="AttentionProbe needs the toy transformer"):
        AttentionProbe().check_config(torch.nn.Linear(2, 2), dm)
    with pytest.raises(ValueError, match="AttentionProbe needs a noisy-recall datamodule"):
        AttentionProbe().check_config(model, object())
