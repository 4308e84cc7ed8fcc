"""The logit split: the parts (embedding path, each attention, each FF) sum to the model's own logit difference."""
import pytest
import torch

from lightning_modules.attribution import logit_split
from lightning_modules.transformer import Transformer, TransformerConfig
from tests.callbacks.fixtures import tiny_model_and_data, tiny_trainer


@pytest.mark.parametrize("positional", ["absolute", "sinusoidal", "rope", "relative", "alibi", "none"])
def test_the_parts_sum_to_the_logit_difference_on_random_models(positional):
    torch.manual_seed(0)
    net = Transformer(TransformerConfig(dim=16, n_heads=2, vocab_size=11, max_seq_len=32, positional=positional, ff=["mlp", "linear"]))
    tokens = torch.randint(11, (4, 20))
    a, b = torch.randint(11, (4,)), torch.randint(11, (4,))
    parts = logit_split(net, tokens, a, b)
    assert set(parts) == {"embed", "layers.0.attn", "layers.0.ff", "layers.1.attn", "layers.1.ff", "total"}
    summed = sum(v for k, v in parts.items() if k != "total")
    torch.testing.assert_close(summed, parts["total"], rtol=0, atol=1e-5)
    single = logit_split(net, tokens, a, position=7)  # one logit, at another position
    torch.testing.assert_close(sum(v for k, v in single.items() if k != "total"), single["total"], rtol=0, atol=1e-5)


def test_the_parts_sum_to_the_noise_vs_answer_gap_of_a_trained_model(tmp_path):
    model, dm = tiny_model_and_data()
    tiny_trainer(tmp_path, [], max_steps=20).fit(model, dm)
    batch = dm.clean_generator().sample(8, torch.Generator().manual_seed(1))
    tokens, answer = batch["tokens"][:, :-1], batch["answer"]
    pos = int((answer >= 0).sum(0).argmax())  # the position with the most sequences at a trigger
    rows = answer[:, pos] >= 0
    noise = torch.full((int(rows.sum()),), dm.noise_id)
    parts = logit_split(model.net, tokens[rows], noise, answer[rows, pos], position=pos)  # logit(noise) - logit(answer)
    torch.testing.assert_close(sum(v for k, v in parts.items() if k != "total"), parts["total"], rtol=0, atol=1e-5)


def test_layer_norm_is_refused():
    net = Transformer(TransformerConfig(dim=8, vocab_size=5, max_seq_len=8, layer_norm=True))
    with pytest.raises(ValueError, match="without LayerNorm"):
        logit_split(net, torch.zeros(1, 4, dtype=torch.long), torch.tensor([0]))
