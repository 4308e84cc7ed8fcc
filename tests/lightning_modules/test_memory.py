"""The memory probes (lightning_modules/memory.py) against brute-force loops in float64 on a tiny model, on the
constructed model (every memory recalled exactly, overlap 1), and at initialisation (chance)."""
import math

import pytest
import torch
import torch.nn.functional as F

from datamodules import hijack_prompts
from datamodules.bigram import SyntheticBigram
from datamodules.generator import NoisyRecallGenerator
from lightning_modules import memory
from lightning_modules.transformer import Transformer, TransformerConfig

HIJACK_TRAINED = ["layers.0.attn.wk", "layers.1.attn.wk", "layers.1.attn.wo", "layers.1.ff.*"]
HIJACK_ZERO = ["layers.0.attn.wk", "layers.1.attn.wk", "layers.1.attn.wo"]


def tiny(positional: str, vocab: int = 8, dim: int = 12, seed: int = 0, zero: bool = False, ff: str = "mlp") -> tuple[Transformer, NoisyRecallGenerator]:
    torch.manual_seed(seed)
    gen = NoisyRecallGenerator(SyntheticBigram(vocab, seed=seed).build(), seq_len=10, alpha=0.0, trigger_mode="random")
    cfg = TransformerConfig(dim=dim, ff=["none", ff], learned_query=positional != "relative", positional=positional,
                            positional_layers=[0], max_seq_len=32, vocab_size=gen.vocab_size, ff_width=20,
                            trainable=HIJACK_TRAINED, zero_init=HIJACK_ZERO if zero else [])
    net = Transformer(cfg).double()
    net.requires_grad_(False)
    if positional == "relative" and not zero:
        with torch.no_grad():
            net.layers[0].attn.pos.bias.normal_()
    return net, gen


def brute_cos(a, b):
    return sum(x * y for x, y in zip(a.flatten().tolist(), b.flatten().tolist())) / (a.norm() * b.norm()).item()


def brute_recall(rows: list[list[float]], targets: list[int], weights: list[float] | None = None) -> float:
    weights = weights or [1.0] * len(rows)
    credit = [(1.0 / r.count(max(r)) if r[t] == max(r) else 0.0) for r, t in zip(rows, targets)]
    return sum(c * w for c, w in zip(credit, weights)) / sum(weights)


@pytest.mark.parametrize("positional", ["absolute", "relative"])
def test_positional_memory_equals_a_loop_over_query_and_key_positions(positional):
    net, _ = tiny(positional)
    attn, length, t_train = net.layers[0].attn, 20, 10
    wq = attn.wq if attn.wq is not None else torch.eye(12, dtype=torch.float64)
    mean = net.tok_emb.mean(0)
    x = [mean + (net.pos_emb[t] if positional == "absolute" else 0) for t in range(length)]

    def score(t, s):
        bias = attn.pos.bias[0, min(t - s, attn.pos.max_distance)].item() if positional == "relative" else 0.0
        return float((wq @ x[t]) @ (attn.wk @ x[s])) / math.sqrt(12) + bias

    rows = [[score(t, s) for s in range(t + 1)] for t in range(1, length)]
    got = memory.positional_memory(net, 0, t_train, length)
    assert got["inside"] == pytest.approx(brute_recall(rows[: t_train - 1], list(range(t_train - 1))), abs=1e-12)
    assert got["beyond"] == pytest.approx(brute_recall(rows[t_train - 1:], list(range(t_train - 1, length - 1))), abs=1e-12)
    if positional == "absolute":
        construction = sum(torch.outer(net.pos_emb[t] / net.pos_emb[t].dot(net.pos_emb[t]),
                                       net.pos_emb[t - 1] / net.pos_emb[t - 1].dot(net.pos_emb[t - 1])) for t in range(1, t_train))
        assert got["overlap"] == pytest.approx(brute_cos(wq.T @ attn.wk, construction), abs=1e-12)
    else:
        bias = attn.pos.bias[0]
        indicator = torch.zeros_like(bias)
        indicator[1] = 1
        assert got["overlap"] == pytest.approx(brute_cos(bias - bias.mean(), indicator - indicator.mean()), abs=1e-12)


def test_induction_output_and_global_memories_equal_loops_over_tokens():
    net, gen = tiny("absolute", vocab=16)  # more tokens than dimensions: the FF's linear part is determined
    v = gen.vocab_size
    e, u = net.tok_emb, net.unemb
    a1, a2, block = net.layers[0].attn, net.layers[1].attn, net.layers[1]
    dual = lambda x: x / x.dot(x)  # noqa: E731
    weights = torch.rand(v, dtype=torch.float64)
    # induction keys: the query e_z against phi_z' = W_O1 W_V1 e_z'
    phi = [a1.wo @ (a1.wv @ e[z]) for z in range(v)]
    rows = [[float((a2.wq @ e[z]) @ (a2.wk @ phi[k])) for k in range(v)] for z in range(v)]
    got = memory.induction_key_memory(net, 0, 1, weights)
    assert got["recall"] == pytest.approx(brute_recall(rows, list(range(v)), weights.tolist()), abs=1e-12)
    construction = sum(torch.outer(dual(e[z]), dual(phi[z])) for z in range(v))
    assert got["overlap"] == pytest.approx(brute_cos(a2.wq.T @ a2.wk, construction), abs=1e-12)
    # output: W_U W_O W_V e_z read as z
    rows = [[float(u[k] @ (a2.wo @ (a2.wv @ e[z]))) for k in range(v)] for z in range(v)]
    got = memory.output_memory(net, 1)
    assert got["recall"] == pytest.approx(brute_recall(rows, list(range(v))), abs=1e-12)
    construction = sum(torch.outer(dual(u[z]), dual(e[z])) for z in range(v))
    assert got["overlap"] == pytest.approx(brute_cos(a2.wo @ a2.wv, construction), abs=1e-12)
    # global: the FF's top logit on e_z against b(z), KL to the data, its linear part against sum u_b(z) e_z^T
    p = gen.global_next_token()
    answers = [max((j for j in range(v) if j != z), key=lambda j: p[z, j].item()) for z in range(v)]
    ff_out = [block.ff.w2 @ F.relu(block.ff.w1 @ e[z]) for z in range(v)]
    rows = [[float(u[k] @ ff_out[z]) for k in range(v)] for z in range(v)]
    kls = [sum(p[z, j].item() * (math.log(p[z, j].item()) - (rows[z][j] - math.log(sum(math.exp(r) for r in rows[z]))))
               for j in range(v) if p[z, j] > 0) for z in range(v)]
    got = memory.global_memory(net, 1, p, weights)
    assert got["top1"] == pytest.approx(brute_recall(rows, answers, weights.tolist()), abs=1e-12)
    assert got["kl"] == pytest.approx(sum(k * w for k, w in zip(kls, weights.tolist())) / weights.sum().item(), abs=1e-10)
    # the linear part: the W minimising sum_z |W e_z - FF(e_z)|^2 (normal equations)
    E, Y = torch.stack(list(e)), torch.stack(ff_out)
    linear = Y.T @ E @ torch.linalg.inv(E.T @ E)
    construction = sum(torch.outer(dual(u[answers[z]]), dual(e[z])) for z in range(v))
    assert got["overlap"] == pytest.approx(brute_cos(linear, construction), abs=1e-9)


@pytest.mark.parametrize("positional", ["absolute", "relative"])
def test_the_constructed_model_recalls_every_memory_exactly(positional):
    # the theory's regime: embeddings nearly orthogonal (dim well above the vocabulary and the training length)
    net, gen = tiny(positional, vocab=12, dim=256)
    p = gen.global_next_token()
    built = memory.construct(net, p, t_train=10)
    assert [layer.ff is not None for layer in built.layers] == [False, True]
    got = memory.probe_all(built, memory.MemoryLayers(), p, t_train=10, length=20)
    for key in ("positional/inside", "induction_key/recall", "output/recall", "global/top1"):
        assert got[key] == 1.0, key
    for key in ("positional/overlap", "induction_key/overlap", "output/overlap", "global/overlap"):
        assert got[key] == pytest.approx(1.0, abs=1e-9), key
    # beyond T_train: the relative bias is the same at every offset; absolute positions past T_train are not in the sum
    assert got["positional/beyond"] == (1.0 if positional == "relative" else pytest.approx(0.0, abs=0.2))
    # and it answers hijack prompts as the theory does: the global answer without a pair, the context from one pair on.
    # Not on every prompt: the FF also reads what the induction head wrote (cross-talk ~ global * output * sqrt(V / d);
    # measured 0.69-0.73 / 0.70-0.80 at this size)
    prompts = {n: hijack_prompts.build(gen.bigram, n, 10, "late", n_prompts=64, seed=1) for n in (0, 1, 2)}
    built.float()
    wins = {n: hijack_prompts.measure(built, pr) for n, pr in prompts.items()}
    assert wins[0]["b_wins"] >= 0.6 and wins[0]["logit_gap"] < -3, wins[0]
    for n in (1, 2):
        assert wins[n]["o_wins"] >= 0.6 and wins[n]["logit_gap"] > 1 and wins[n]["attn_after_q"] > 0.99, wins[n]


def test_at_a_zero_initialisation_the_memories_score_chance():
    net, gen = tiny("relative", vocab=16, dim=32, zero=True)
    length, t_train = 20, 10
    got = memory.probe_all(net, memory.MemoryLayers(), gen.global_next_token(), t_train, length)
    # a zero W_K and bias: every earlier key ties, so recall is the mean of 1 / (t + 1)
    assert got["positional/inside"] == pytest.approx(sum(1 / (t + 1) for t in range(1, t_train)) / (t_train - 1))
    assert got["positional/beyond"] == pytest.approx(sum(1 / (t + 1) for t in range(t_train, length)) / (length - t_train))
    assert got["induction_key/recall"] == pytest.approx(1 / gen.vocab_size) and got["induction_key/overlap"] == 0.0
    assert got["output/recall"] == pytest.approx(1 / gen.vocab_size) and got["output/overlap"] == 0.0
    # the FF starts random, not zero: near chance, far from a memory
    assert got["global/top1"] < 0.3 and abs(got["global/overlap"]) < 0.3


def test_global_next_token_puts_alpha_on_the_noise_after_a_fixed_trigger():
    gen = NoisyRecallGenerator(SyntheticBigram(10, seed=0).build(), seq_len=16, alpha=0.3, n_triggers=2)
    p = gen.global_next_token()
    assert p.shape == (11, 11) and torch.allclose(p.sum(-1), torch.ones(11, dtype=torch.float64))
    for trigger in gen.fixed_triggers.tolist():
        assert p[trigger, gen.noise_id] == pytest.approx(0.3 + 0.7 / len(gen.output_pool) * (gen.noise_id in gen.output_pool))
    others = [z for z in range(10) if z not in gen.fixed_triggers.tolist()]
    assert torch.allclose(p[others, :10], gen.bigram.transitions[others].double() / gen.bigram.transitions[others].double().sum(-1, keepdim=True))
    assert memory.global_answers(p)[gen.fixed_triggers].tolist() == [gen.noise_id] * 2


def test_the_constructed_model_is_a_model_option_evaluated_with_validate_and_refused_by_fit(tmp_path, monkeypatch, capsys):
    import json

    from main import main
    from tests.pipeline.test_cli import only_run_dir

    monkeypatch.setenv("WANDB_MODE", "disabled")
    args = ["--config", "configs/hijack.yaml", "--model.init_args.constructed", "true", "--trainer.callbacks=[]",
            "--data.init_args.n_test", "32", "--data.init_args.test_lengths", "[64]", "--model.init_args.laser_rhos", "[1.0]",
            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path / "runs"), "--report", "false"]
    with pytest.raises(SystemExit) as refused:
        main(["fit", *args])
    assert refused.value.code == 2 and "model.init_args.constructed" in capsys.readouterr().err
    main(["validate", *args])
    run = only_run_dir(tmp_path / "runs")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["untrained"] is False and summary["results"]["constructed"] == {
        "scales": {"position": 12.0, "induction": 12.0, "output": 8.0, "global_": 4.0}, "t_train": 64}
    assert 0 <= summary["variants"]["full"]["acc"] <= 1
    # what was evaluated is the construction: rebuilt from the module's own random embeddings, the probes recall it
    from datamodules import NoisyRecallDataModule
    from datamodules.bigram import SyntheticBigram
    from lightning_modules import NoisyRecallModule

    dm = NoisyRecallDataModule(bigram=SyntheticBigram(64, 1.0, seed=0), seq_len=64, n_triggers=1, trigger_mode="random",
                               alpha=0.0, loss_on="repeat_triggers", n_test=32)
    torch.manual_seed(0)
    module = NoisyRecallModule(model=TransformerConfig(dim=64, ff=["none", "mlp"], learned_query=False, positional="relative",
                                                       positional_layers=[0]),
                               constructed=True, vocab_size=dm.vocab_size, noise_id=dm.noise_id)
    module.build_constructed(dm.gen)
    got = memory.probe_all(module.net, memory.MemoryLayers(), dm.gen.global_next_token(), 64, 128)
    # at dim 64 and 65 tokens the memories overlap a little: one token of 65 is read out as another
    assert got["positional/inside"] == 1.0 and got["output/recall"] >= 0.95
    for key in ("positional/overlap", "induction_key/overlap", "output/overlap", "global/overlap"):
        assert got[key] == pytest.approx(1.0, abs=1e-5), key
