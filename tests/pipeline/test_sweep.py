"""Sweep files: grid expansion, bad files, and a local run of a 2-point grid gathered into one table."""
import csv
from pathlib import Path

import pytest
import yaml

from pipeline import sweep
from reports import table as collect
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


TINY_GRID = {"trainer.max_steps": [2], "trainer.val_check_interval": [2], "trainer.enable_progress_bar": [False],
             "trainer.callbacks": [[]], "model.init_args.model.dim": [16], "model.init_args.model.max_seq_len": [24],
             "data.init_args.seq_len": [24], "data.init_args.batch_size": [8], "data.init_args.n_test": [16],
             "report": [False]}


def write_sweep(tmp_path, grid: dict):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"base": "configs/noisy.yaml", "grid": TINY_GRID | grid}))
    return path


def test_a_misspelled_grid_key_is_refused_naming_task_and_key_before_anything_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    path = write_sweep(tmp_path, {"data.init_args.alpah": [0.1], "seed_everything": [0, 1]})
    with pytest.raises(SystemExit) as exit_info:
        sweep.main([str(path), "--root", str(tmp_path / "sweep")])
    message = str(exit_info.value.code)
    assert message.startswith("error: 2 of 2 tasks of") and "nothing was run" in message
    assert 'task 1 {' in message and "data.init_args.alpah: unknown key 'alpah' (did you mean 'alpha'?)" in message
    assert not (tmp_path / "sweep").exists()
    # --check says the same, and all is well once the key is right
    with pytest.raises(SystemExit):
        sweep.main([str(path), "--check"])
    path.write_text(path.read_text().replace("alpah", "alpha"))
    sweep.main([str(path), "--check"])
    assert "2 tasks of" in capsys.readouterr().out


def test_a_local_sweep_with_a_failed_task_runs_the_others_and_exits_non_zero_showing_the_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    path = write_sweep(tmp_path, {"data.init_args.alpha": [0.5, 1.5]})  # 1.5 parses as a float; the datamodule refuses it
    with pytest.raises(SystemExit) as exit_info:
        sweep.main([str(path), "--root", str(tmp_path / "sweep")])
    message = str(exit_info.value.code)
    assert message.startswith("error: 1 of 2 tasks failed") and "data.alpha must be in [0, 1], got 1.5" in message
    table = list(csv.DictReader(open(tmp_path / "sweep" / collect.RESULTS_FILE)))
    assert {r["status"] for r in table if r["task"] == "0"} == {"completed"}
    assert [r["status"] for r in table if r["task"] == "1"] == ["failed"]  # it ran, and failed before its summary
    assert "data.alpha must be in [0, 1], got 1.5" in capsys.readouterr().out  # collect shows the error too


def test_sweep_file_mistakes_and_non_sweep_directories_are_one_line(tmp_path):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"base": "configs/noisy.yaml", "grid": {"a": 1}}))
    with pytest.raises(SystemExit, match=r"^error: .*grid.a must be a non-empty list"):
        sweep.main([str(tmp_path / "bad.yaml")])
    with pytest.raises(SystemExit, match=r"^error: sweep file .*nope.yaml does not exist"):
        sweep.main([str(tmp_path / "nope.yaml")])
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text("{}")
    with pytest.raises(SystemExit, match=r"^error: .*run has no tasks.json, so it is not a sweep directory \(it is a single run"):
        collect.main([str(tmp_path / "run")])
    with pytest.raises(SystemExit, match=r"^error: .*missing does not exist, so it is not a sweep directory"):
        collect.main([str(tmp_path / "missing")])


def test_a_rerun_sweep_counts_only_each_tasks_newest_attempt_at_its_own_grid_point(tmp_path, monkeypatch):
    import json
    import shutil

    from reports import build

    monkeypatch.setenv("WANDB_MODE", "disabled")
    root = tmp_path / "sweep"
    sweep.main([str(write_sweep(tmp_path, {"data.init_args.alpha": [0.5, 0.9]})), "--root", str(root)])
    first = {r["task"]: r for r in collect.rows(root) if r.get("variant") == "full"}
    assert {t: r["status"] for t, r in first.items()} == {0: "completed", 1: "completed"}
    # the same sweep name, another grid: task 1 is now alpha 1.5, which fails before its run writes a summary
    with pytest.raises(SystemExit, match="1 of 2 tasks failed"):
        sweep.main([str(write_sweep(tmp_path, {"data.init_args.alpha": [0.5, 1.5]})), "--root", str(root)])
    rows = collect.rows(root)
    task1 = [r for r in rows if r["task"] == 1]
    assert [(r["status"], r["data.init_args.alpha"], r.get("variant")) for r in task1] == [("failed", 1.5, None)]
    assert "data.alpha must be in [0, 1], got 1.5" in task1[0]["error"]
    assert not any("p_noise" in r for r in task1)  # the old alpha-0.9 numbers are not this task's
    table = list(csv.DictReader(open(root / collect.RESULTS_FILE)))
    assert [(r["status"], r["p_noise"]) for r in table if r["task"] == "1"] == [("failed", "")]
    by = list(csv.DictReader(open(root / collect.BY_SETTING_FILE)))
    assert {r["data.init_args.alpha"] for r in by} == {"0.5"}
    # task 0 ran again: its row is the newest attempt's run, not the first one's
    task0 = next(r for r in rows if r["task"] == 0 and r["variant"] == "full")
    assert task0["status"] == "completed" and task0["run_dir"] != first[0]["run_dir"]
    page = build.report(root).read_text()
    assert "Tasks that did not complete" in page and "got 1.5" in page
    # a run directory whose config is another grid point never counts for a task, with or without its attempt record
    stray = root / "1" / "noisy" / "stray"
    shutil.copytree(first[1]["run_dir"], stray)  # alpha 0.9's run, under task 1 (now alpha 1.5)
    summary = json.loads((stray / "summary.json").read_text())
    summary.pop("sweep_task")
    (stray / "summary.json").write_text(json.dumps(summary))
    (root / "1" / "attempt.json").unlink()
    (root / "1" / "error.txt").unlink()
    assert [(r["status"], r.get("variant")) for r in collect.rows(root) if r["task"] == 1] == [("missing", None)]


def test_a_task_rerun_after_the_grid_was_edited_counts_and_says_tasks_json_disagrees(tmp_path, monkeypatch, capsys):
    import json

    from reports import build

    monkeypatch.setenv("WANDB_MODE", "disabled")
    root = tmp_path / "sweep"
    path = write_sweep(tmp_path, {"data.init_args.alpha": [0.5, 0.9]})
    sweep.main([str(path), "--root", str(root)])
    write_sweep(tmp_path, {"data.init_args.alpha": [0.5, 0.8]})  # the grid edited, one task re-run as an array task does
    sweep.main([str(path), "--task", "1", "--root", str(root)])
    task1 = [r for r in collect.rows(root) if r["task"] == 1]
    assert {(r["status"], r["data.init_args.alpha"]) for r in task1} == {("completed", 0.8)}  # not "missing"
    assert "tasks.json has" in task1[0]["note"] and '"data.init_args.alpha": 0.9' in task1[0]["note"]
    collect.main([str(root)])
    assert "note: task 1: tasks.json has" in capsys.readouterr().out
    assert "its newest attempt ran" in build.report(root).read_text()
    # a damaged newest attempt.json: which attempt is the newest is unknown, so no older run passes for the task
    (root / "1" / "attempt.json").write_text('{"attempt": ')
    task1 = [r for r in collect.rows(root) if r["task"] == 1]
    assert [(r["status"], r.get("variant")) for r in task1] == [("damaged", None)]
    assert "attempt.json" in task1[0]["error"] and "no run is counted" in task1[0]["error"]
    # a task still running is counted as running, not failed
    run0 = next(r for r in collect.rows(root) if r["task"] == 0)["run_dir"]
    summary = json.loads((Path(run0) / "summary.json").read_text()) | {"status": "running"}
    (Path(run0) / "summary.json").write_text(json.dumps(summary))
    from reports import series

    assert series.task_counts(collect.rows(root)) == {"running": 1, "damaged": 1}
    assert [t["task"] for t in series.failed_tasks(collect.rows(root))] == [1]
    assert "2 tasks: 1 running, 1 damaged" in build.report(root).read_text()


def test_a_local_task_run_writes_tasks_json_so_collect_reads_it(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    root = tmp_path / "sweep"
    sweep.main([str(write_sweep(tmp_path, {"seed_everything": [0, 1]})), "--task", "0", "--root", str(root)])
    rows = collect.rows(root)  # was: "not a sweep directory"
    assert {(r["task"], r["status"]) for r in rows} == {(0, "completed"), (1, "missing")}
