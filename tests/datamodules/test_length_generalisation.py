"""Test sets at several lengths, with in-context pairs anywhere or only beyond the training length, and their
metrics (acc, p_correct, p_global per variant) through main.py."""
import json

import pytest

from datamodules import NoisyRecallDataModule, SyntheticBigram
from main import main
from tests.pipeline.test_cli import TINY, only_run_dir


def test_the_datamodule_builds_one_set_per_length_and_placement():
    dm = NoisyRecallDataModule(SyntheticBigram(vocab_size=16), seq_len=16, batch_size=4, n_test=32, test_lengths=[32, 64])
    assert dm.eval_set_names == ["T32:anywhere", "T32:beyond", "T64:anywhere", "T64:beyond"] and dm.seq_len == 64
    dm.setup("fit")
    loaders = dm.val_dataloader()
    assert len(loaders) == 5 and len(loaders[0].dataset) == 32
    beyond = dm.extra_sets["T64:beyond"].batch
    assert beyond["tokens"].shape == (32, 65) and not (beyond["answer"][:, :16] >= 0).any()
    assert int(dm.global_answer[3]) == int(dm.bigram.transitions[3].argmax()) and dm.global_answer.numel() == dm.vocab_size


def test_metrics_per_length_and_placement_reach_the_summary(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    main(["fit", *TINY, "--model.init_args.model.max_seq_len", "48", "--data.init_args.test_lengths", "[24,48]",
          "--trainer.callbacks=[]", "--trainer.default_root_dir", str(tmp_path)])
    summary = json.loads((only_run_dir(tmp_path) / "summary.json").read_text())
    full = summary["variants"]["full"]
    assert "acc@T24:beyond" not in full  # at the training length nothing lies beyond it
    for name in ("T24:anywhere", "T48:anywhere", "T48:beyond"):
        for metric in ("acc", "p_correct", "p_global"):
            assert 0 <= full[f"{metric}@{name}"] <= 1, (metric, name)
    assert "p_global" not in full  # the main test set keeps its metrics
    out = capsys.readouterr().out
    assert "On the other test sets (<metric>@<set>):" in out and "full @ T48:beyond" in out


def test_an_absolute_table_shorter_than_the_longest_test_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    with pytest.raises(SystemExit):
        main(["fit", *TINY, "--data.init_args.test_lengths", "[96]", "--trainer.default_root_dir", str(tmp_path)])
    assert "exceeds model.model.max_seq_len (24)" in capsys.readouterr().err


def test_the_report_draws_accuracy_against_the_test_length():
    from reports.kinds import knowledge_hijack

    variants = {"full": {"acc": 0.9, "acc@T48:anywhere": 0.8, "acc@T96:anywhere": 0.7, "acc@T96:beyond": 0.3, "p_global@T96:beyond": 0.1}}
    sets = [{"name": None, "length": 24, "placement": "main"}, {"name": "T48:anywhere", "length": 48, "placement": "anywhere"},
            {"name": "T96:anywhere", "length": 96, "placement": "anywhere"}, {"name": "T96:beyond", "length": 96, "placement": "beyond"}]
    summary = {"variants": variants, "results": {"test_sets": sets}}  # the test sets as the module declares them
    assert knowledge_hijack.by_length(summary) == {"anywhere": {"full": [(24, 0.9), (48, 0.8), (96, 0.7)]},
                                                   "beyond": {"full": [(96, 0.3)]}}  # none at T_train: none can exist
