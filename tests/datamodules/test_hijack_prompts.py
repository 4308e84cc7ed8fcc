"""The designed hijack prompts: exactly n in-context pairs (and m global ones), q last, b the bigram argmax, pairs
where the placement says; and the measurement on a model."""
import pytest
import torch

from datamodules.bigram import SyntheticBigram
from datamodules.hijack_prompts import build, measure
from lightning_modules.transformer import Transformer, TransformerConfig


@pytest.fixture(scope="module")
def bigram():
    return SyntheticBigram(vocab_size=32, seed=2).build()


@pytest.mark.parametrize("placement, n, m", [("early", 3, 0), ("late", 0, 2), ("beyond", 4, 2), ("late", 8, 0)])
def test_exactly_n_pairs_q_last_b_the_argmax_and_placements_respected(bigram, placement, n, m):
    p = build(bigram, n_pairs=n, n_global=m, length=64, placement=placement, t_train=32, n_prompts=40, seed=1)
    assert p.tokens.shape == (40, 64)
    assert torch.equal(p.tokens[:, -1], p.q)
    assert torch.equal(p.b, bigram.transitions.argmax(-1)[p.q])
    assert not ((p.o == p.q) | (p.o == p.b)).any()
    for i in range(40):
        seq = p.tokens[i]
        where = (seq[:-1] == p.q[i]).nonzero().flatten().tolist()
        assert sorted(where) == sorted(p.pair_starts[i])  # q occurs only in the pairs (and last)
        following = [int(seq[w + 1]) for w in where]
        assert following.count(int(p.o[i])) == n and following.count(int(p.b[i])) == m
        lo, hi = {"early": (0, 31), "late": (31, 62), "beyond": (32, 62)}[placement]
        assert all(lo <= w < hi for w in where), (placement, where)


def test_too_many_pairs_for_the_room_are_refused(bigram):
    with pytest.raises(ValueError, match="do not fit"):
        build(bigram, n_pairs=20, length=40, placement="early")


def test_measure_reports_probabilities_winners_and_attention(bigram):
    torch.manual_seed(0)
    net = Transformer(TransformerConfig(dim=16, vocab_size=32, max_seq_len=64, ff=["none", "mlp"]))
    p = build(bigram, n_pairs=2, length=48, placement="late", n_prompts=16)
    out = measure(net, p)
    assert set(out) == {"p_o", "p_b", "logit_gap", "o_wins", "b_wins", "other_wins", "attn_after_q", "attn_after_o", "attn_after_b"}
    assert out["o_wins"] + out["b_wins"] + out["other_wins"] == pytest.approx(1.0)
    assert 0 < out["p_o"] < 1 and 0 <= out["attn_after_q"] <= 1
    assert out["attn_after_b"] == 0 and out["attn_after_o"] == out["attn_after_q"]  # no (q, b) pair here
    # with k = 3 pairs (q, b) as well: the mass splits between the two kinds of pair, by the positions build() chose
    p = build(bigram, n_pairs=2, length=48, placement="late", n_global=3, n_prompts=16)
    out = measure(net, p)
    pattern = net.layers[-1].attn.probabilities(
        __import__("lightning_modules.attribution", fromlist=["x"]).traced_forward(net, p.tokens)[2][-1], query=-1).mean(1)[:, 0]
    by_o = sum(float(pattern[i, [s + 1 for s in st[:2]]].sum()) for i, st in enumerate(p.pair_starts)) / 16
    by_b = sum(float(pattern[i, [s + 1 for s in st[2:]]].sum()) for i, st in enumerate(p.pair_starts)) / 16
    assert out["attn_after_o"] == pytest.approx(by_o, rel=1e-5) and out["attn_after_b"] == pytest.approx(by_b, rel=1e-5)
    assert all(len(st) == 5 for st in p.pair_starts)
    assert all((p.tokens[i, [s + 1 for s in st[2:]]] == p.b[i]).all() for i, st in enumerate(p.pair_starts))


def test_the_hijack_probe_records_win_rates_and_boundaries_in_the_summary(tmp_path, monkeypatch, capsys):
    import json

    from main import main
    from tests.pipeline.test_cli import TINY, only_run_dir

    monkeypatch.setenv("WANDB_MODE", "disabled")
    probe = ('[{"class_path": "callbacks.HijackProbe", "init_args": {"n_pairs": [0, 2], "length_factors": [1, 2], '
             '"placements": ["late", "beyond"], "ff_rhos": [1.0, 0.0], "n_prompts": 16}}]')
    main(["fit", *TINY, "--model.init_args.model.max_seq_len", "48", "--data.init_args.alpha", "0.0",
          "--trainer.callbacks", probe, "--trainer.default_root_dir", str(tmp_path)])
    probe = json.loads((only_run_dir(tmp_path) / "summary.json").read_text())["callbacks"]["hijack_probe"]
    result = probe["results"]
    assert set(result) == {"late", "beyond"} and set(result["late"]) == {"T24", "T48"} and set(result["beyond"]) == {"T48"}
    row = result["late"]["T24"]["full"]  # rho 1 keeps the FF's full rank: the full model
    assert set(row["by_n"]) == {"0", "2"} and row["boundary"] in (None, 0, 2)
    for m in row["by_n"].values():
        assert m["o_wins"] + m["b_wins"] + m["other_wins"] == pytest.approx(1.0)
    out = capsys.readouterr().out
    assert "fraction of prompts where the in-context answer o wins" in out and "w_ic * a(n, T) - w_g" in out
    # the theory fit of each setting: 2 n values x 2 lengths = 4 points for "late"; "beyond" has one length, too few
    fit = probe["theory_fit"]["late"]["full"]
    assert fit["n_points"] == 4 and set(fit["by_length"]) == {"T24", "T48"} and "beyond" not in probe["theory_fit"]
    assert fit["by_length"]["T24"]["measured_gap"] == [row["by_n"][k]["logit_gap"] for k in ("0", "2")]
    # the logit split of each cell sums to the model's own gap, and the report draws both hijack figures from it
    split = row["by_n"]["2"]["logit_split"]
    assert sum(v for k, v in split.items() if k != "total") == pytest.approx(split["total"], abs=1e-4)
    from reports import build
    from reports.kinds import knowledge_hijack

    run = only_run_dir(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["kinds"] == ["noisy_recall", "knowledge_hijack"]  # the data's (alpha 0, no test lengths), the probe's
    assert knowledge_hijack.win_rates(summary)["late T24"]["full"] == [(0, row["by_n"]["0"]["o_wins"]), (2, row["by_n"]["2"]["o_wins"])]
    assert probe["ff_variants"]["full"] == {"rho": 1.0, "ranks": {"layers.1.ff.w2": 16}}
    build.report(run)
    assert {"hijack", "hijack_logit_split", "hijack_theory"} <= {p.stem for p in (run / "report" / "figures").glob("*.png")}


def test_the_hijack_probe_refuses_prompts_longer_than_the_position_table(tmp_path, monkeypatch, capsys):
    from main import main
    from tests.pipeline.test_cli import TINY

    monkeypatch.setenv("WANDB_MODE", "disabled")
    probe = '[{"class_path": "callbacks.HijackProbe", "init_args": {"length_factors": [4]}}]'
    with pytest.raises(SystemExit):
        main(["fit", *TINY, "--trainer.callbacks", probe, "--trainer.default_root_dir", str(tmp_path)])
    assert "HijackProbe: prompts of 96 tokens exceed model.max_seq_len (24)" in capsys.readouterr().err


@pytest.mark.parametrize("init_args, message", [
    ('{"ff_rhos": [1.0, 1.5]}', "HijackProbe.ff_rhos must be rank fractions in [0, 1], got [1.0, 1.5]"),
    ('{"ff_target": "layers.*.attn.wk"}', "HijackProbe.ff_target 'layers.*.attn.wk' must name one matrix"),
    ('{"n_prompts": 0}', "HijackProbe.n_prompts must be >= 1"),
    # settings that build no prompt at all: training would complete, then the report had nothing to draw
    ('{"n_pairs": [20, 30], "length_factors": [1]}',
     "HijackProbe.n_pairs [20, 30]: at most 6 pairs fit a 24-token prompt (late, length factor 1); include some n <= 6"),
    ('{"placements": ["beyond"], "length_factors": [1]}', "HijackProbe.placements: 'beyond' needs a length factor > 1"),
])
def test_hijack_probe_settings_are_refused_before_the_first_step(tmp_path, monkeypatch, capsys, init_args, message):
    from main import main
    from tests.pipeline.test_cli import TINY

    monkeypatch.setenv("WANDB_MODE", "disabled")
    probe = f'[{{"class_path": "callbacks.HijackProbe", "init_args": {init_args}}}]'
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *TINY, "--model.init_args.model.max_seq_len", "96", "--trainer.callbacks", probe,
              "--trainer.default_root_dir", str(tmp_path / "runs")])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # refused with the config: nothing trained, nothing written


def test_the_hijack_boundary_is_the_smallest_winning_n_whatever_order_n_pairs_is_written_in():
    from callbacks import HijackProbe
    from lightning_modules.hijack_theory import measured_boundary

    assert HijackProbe(n_pairs=[8, 0, 4, 2, 4]).n_pairs == [0, 2, 4, 8]
    wins = {8: 0.9, 0: 0.0, 4: 0.7, 2: 0.3}  # rows in the order the config listed n
    assert measured_boundary(wins) == 4 == measured_boundary(dict(sorted(wins.items())))
