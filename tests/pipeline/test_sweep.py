"""Sweep files: grid expansion, bad files, and a local run of a 2-point grid gathered into one table."""
import csv

import pytest
import yaml

from pipeline import collect, sweep
from pipeline.sweep import Sweep


def test_grid_points_and_task_arguments(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"base": "configs/noisy.yaml", "grid": {"data.init_args.alpha": [0.0, 0.5], "seed_everything": [0, 1, 2]}}))
    s = Sweep.load(path)
    assert s.name == "s" and s.subcommand == "fit" and len(s.points()) == 6
    assert s.points()[1] == {"data.init_args.alpha": 0.0, "seed_everything": 1}
    assert s.task_args(5, "runs/sw") == ["fit", "--config", "configs/noisy.yaml", "--data.init_args.alpha", "0.5",
                                         "--seed_everything", "2", "--trainer.default_root_dir", "runs/sw/5"]


@pytest.mark.parametrize("spec, error", [
    ({"grid": {"a": [1]}}, "a sweep file has base"),
    ({"base": "configs/noisy.yaml", "grid": {"a": 1}}, "grid.a must be a non-empty list"),
    ({"base": "configs/missing.yaml", "grid": {"a": [1]}}, "base config configs/missing.yaml does not exist"),
    ({"base": "configs/noisy.yaml", "grid": {"a": [1]}, "gird": {}}, "a sweep file has base"),
])
def test_bad_sweep_files_name_the_problem(tmp_path, spec, error):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises((ValueError, FileNotFoundError), match=error):
        Sweep.load(path)


def test_a_model_grid_runs_locally_and_collects_one_row_per_task_and_variant(tiny_hf, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"base": "configs/pythia_facts.yaml", "subcommand": "test", "grid": {
        "model.init_args.model_name": [tiny_hf["gpt_neox"], tiny_hf["phi3"]],
        "data.init_args.tokenizer": [tiny_hf["gpt_neox"]],
        "data.init_args.n_prompts": [20],
        "model.init_args.laser": [{"cut": [{"matrix": "mlp_out", "rho": 0.0, "layers": "all"}]}],
    }}))
    sweep.main([str(path), "--root", str(tmp_path / "sweep")])
    table = list(csv.DictReader(open(tmp_path / "sweep" / collect.RESULTS_FILE)))
    full = [r for r in table if r["variant"] in ("full", "cut")]
    assert [(r["task"], r["variant"]) for r in full] == [("0", "full"), ("0", "cut"), ("1", "full"), ("1", "cut")]
    assert {r["model.init_args.model_name"] for r in full} == {tiny_hf["gpt_neox"], tiny_hf["phi3"]}
    assert all(r["status"] == "completed" and 0 < float(r["p_answer"]) < 1 for r in full)
