"""`main.py` through LightningCLI: a tiny run end to end, reproducibility from the saved config, bad input."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from main import main
from tests.wandb_records import read_run

TINY = [
    "--config", "configs/noisy.yaml",
    "--trainer.max_steps", "6", "--trainer.val_check_interval", "3", "--trainer.log_every_n_steps", "1",
    "--trainer.enable_progress_bar", "false",
    "--model.init_args.model.dim", "16", "--model.init_args.model.max_seq_len", "24",
    "--data.init_args.seq_len", "24", "--data.init_args.batch_size", "8", "--data.init_args.n_test", "16",
    "--report", "false",  # the report of a run is tested in tests/reports/ (it adds ~3 s to every run)
]


def only_run_dir(root: Path) -> Path:
    runs = [p for p in root.glob("*/*") if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def config_n_test(run) -> int:
    return yaml.safe_load((run / "config.yaml").read_text())["data"]["init_args"]["n_test"]


def test_fit_through_main_py_writes_config_summary_and_an_offline_wandb_run(repo, tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": repo}
    env.pop("WANDB_SILENT", None)  # as a user's shell has it: the CLI itself keeps W&B's start-up lines out
    out = subprocess.run(
        [sys.executable, "main.py", "fit", *TINY, "--trainer.default_root_dir", str(tmp_path), "--report", "true"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run = only_run_dir(tmp_path)
    assert run.parent.name == "noisy"  # runs/<run name>/<version>
    # the console ends with what matters: the W&B sync line, the results table, the run directory, the report, last
    tail = out.stdout.strip().splitlines()
    assert tail[-1] == f"Report: {run / 'report' / 'index.html'}" and tail[-3] == f"Run directory: {run}"
    table_at = next(i for i, line in enumerate(tail) if line.startswith("Results on the clean test set"))
    assert tail[table_at - 2].startswith("W&B (offline): wandb sync ") and tail[table_at + 1].split() == ["variant", "p_correct", "p_noise", "acc", "loss"]
    assert "Run history" not in out.stdout + out.stderr and "Tip: For seamless" not in out.stdout + out.stderr
    for noise in ("GPU available:", "TPU available:", "LeafSpec",  # Lightning's lines about nothing in this run
                  "Run data is saved locally", "wandb online", "wandb leet",  # W&B's: its sync line comes last
                  "anonymous setting", "Total Flops", "Total FLOPs", "FLOPs"):  # W&B's warning of Lightning's None; a 0 not measured
        assert noise not in out.stdout + out.stderr, noise
    assert "Trainable params" in out.stdout + out.stderr and "Total params" in out.stdout + out.stderr  # the summary stays

    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["global_step"] == 6 and summary["eval_step"] == 6
    assert summary["ckpt_path"] is None
    assert summary["seed"] == 0
    assert summary["schema"] == 3 and summary["kinds"] == ["noisy_recall"]  # the record declares itself
    assert summary["weights"] == "trained" and summary["machine"]["precision"] == "32-true"
    # rho = 1 keeps the full rank: it is the full model, evaluated once as "full"
    assert set(summary["variants"]) == {"full"} | {f"layers.1.ff.w2@rho{r}" for r in ("0", "0.1", "0.2")}
    grid = {cell["rho"]: cell["variant"] for cell in summary["results"]["laser_grid"]}
    assert grid == {0.0: "layers.1.ff.w2@rho0", 0.1: "layers.1.ff.w2@rho0.1", 0.2: "layers.1.ff.w2@rho0.2", 1.0: "full"}
    assert summary["variant_specs"]["layers.1.ff.w2@rho0.1"] == {"ranks": {"layers.1.ff.w2": 1}}  # floor(0.1 * 16)
    for row in summary["variants"].values():
        assert set(row) == {"p_correct", "p_noise", "acc", "loss"} and all(0 <= row[k] <= 1 for k in ("p_correct", "p_noise", "acc"))
    # rho = 0 removes the FF output entirely, so the prediction differs
    assert summary["variants"]["layers.1.ff.w2@rho0"]["loss"] != pytest.approx(summary["variants"]["full"]["loss"])
    # every mean has its 95% interval over the test sequences, around it; the page's table shows it with n
    intervals = summary["results"]["intervals"]
    assert intervals["n"] == {"main": config_n_test(run)} and set(intervals["variants"]) == set(summary["variants"])
    for variant, row in summary["variants"].items():
        for metric, mean in row.items():
            low, high = intervals["variants"][variant][metric]
            assert low <= mean <= high and (metric == "loss" or 0 <= low and high <= 1), (variant, metric)
    page = (run / "report" / "index.html").read_text()
    assert "p_noise 95% CI" in page and f"95% intervals over the {config_n_test(run)} test sequences" in page

    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["data"]["init_args"]["alpha"] == 0.5 and config["model"]["init_args"]["model"]["dim"] == 16
    # the saved config is the one the user wrote, not this run's paths: rerunning it makes a new run directory
    assert config["trainer"]["default_root_dir"] == str(tmp_path)
    assert list((run / "checkpoints").glob("*.ckpt"))

    logged = read_run(str(run))
    assert logged["run"].display_name == "noisy" and logged["run"].run_group == "noisy-cpu"
    assert list(logged["run"].tags) == ["noisy", "cpu"]
    final = [h for h in logged["history"] if "val/full/p_noise" in h][-1]
    assert final["val/full/p_noise"] == pytest.approx(summary["metrics"]["val/full/p_noise"])
    assert logged["config"]["data"]["init_args"]["alpha"] == 0.5  # the whole resolved config reaches W&B
    assert summary["wandb"]["id"] == logged["run"].run_id


def test_rerun_from_saved_config_reproduces_the_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    main(["fit", *TINY, "--trainer.default_root_dir", str(tmp_path / "a")])
    first = only_run_dir(tmp_path / "a")
    main(["fit", "--config", str(first / "config.yaml"), "--trainer.default_root_dir", str(tmp_path / "b")])
    second = only_run_dir(tmp_path / "b")
    m1 = json.loads((first / "summary.json").read_text())["metrics"]
    m2 = json.loads((second / "summary.json").read_text())["metrics"]
    assert m1.keys() == m2.keys()
    assert all(m1[k] == pytest.approx(m2[k], abs=1e-6) for k in m1)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--data.init_args.alpah", "0.3"], "alpah"),
        (["--data.init_args.alpha", "1.5"], "data.alpha"),
        (["--data.init_args.n_triggers", "64"], "data.n_triggers"),
        (["--data.init_args.seq_len", "48"], "max_seq_len"),
        (["--data.init_args.bigram", '{"class_path": "datamodules.CorpusBigram", "init_args": {"path": "/no/such/corpus.txt"}}'],
         "/no/such/corpus.txt"),
        (["--trainer.devices", "2", "--trainer.strategy", "ddp", "--data.init_args.n_test", "15"], "data.n_test (15)"),
    ],
)
def test_bad_input_fails_before_anything_runs_or_is_written(tmp_path, capsys, monkeypatch, args, expected):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *TINY, "--trainer.default_root_dir", str(tmp_path), *args])
    assert exit_info.value.code != 0
    assert expected in capsys.readouterr().err
    assert not any(tmp_path.iterdir()), "a failed config must not create a run directory"


def test_validate_subcommand_from_a_checkpoint_completes_its_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    main(["fit", *TINY, "--trainer.default_root_dir", str(tmp_path / "fit")])
    trained = only_run_dir(tmp_path / "fit")
    (ckpt,) = (trained / "checkpoints").glob("*.ckpt")
    main(["validate", *TINY, "--trainer.default_root_dir", str(tmp_path / "val"), "--ckpt_path", str(ckpt)])
    summary = json.loads((only_run_dir(tmp_path / "val") / "summary.json").read_text())
    fitted = json.loads((trained / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["ckpt_path"] == str(ckpt)
    # the checkpoint's weights give the same validation numbers as at the end of training
    assert summary["variants"]["full"]["p_noise"] == pytest.approx(fitted["variants"]["full"]["p_noise"], abs=1e-6)


@pytest.mark.slow
def test_paper_config_runs_a_step_with_its_shapes_and_sgd(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cli = main(["fit", "--config", "configs/paper/noisy.yaml", "--trainer.default_root_dir", str(tmp_path), "--report", "false",
                "--trainer.accelerator", "cpu", "--trainer.max_steps", "1", "--trainer.val_check_interval", "1",
                "--trainer.enable_progress_bar", "false", "--data.init_args.batch_size", "2",
                "--data.init_args.n_test", "2", "--data.init_args.num_workers", "0"])
    net = cli.model.net
    assert net.cfg.dim == 256 and net.cfg.ff == ["mlp", "mlp"] and net.unemb.shape == (65, 256)
    assert not net.tok_emb.requires_grad and not net.unemb.requires_grad
    # the reference code's simplifications: W_Q = identity, its init, and its noise (an existing token that can also
    # be an in-context answer)
    assert net.layers[0].attn.wq is None and net.layers[1].attn.wq is None and net.cfg.init == "reference"
    assert cli.datamodule.noise_id == 2 and cli.datamodule.gen.outputs_include_noise
    assert 2 in cli.datamodule.gen.output_pool.tolist() and cli.datamodule.vocab_size == 65
    opt = cli.trainer.optimizers[0]
    assert isinstance(opt, torch.optim.SGD)
    assert opt.defaults["lr"] == 0.03 and opt.defaults["momentum"] == 0.9 and opt.defaults["weight_decay"] == 1e-4
    assert cli.datamodule.gen.seq_len == 256 and cli.trainer.global_step == 1


def test_scheduler_from_yaml_steps_every_optimizer_step(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cli = main(["fit", *TINY, "--trainer.default_root_dir", str(tmp_path),
                "--model.init_args.optimizer", '{"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}}',
                "--model.init_args.scheduler",
                '{"class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": 2, "gamma": 0.5}}'])
    (config,) = cli.trainer.lr_scheduler_configs
    assert config.interval == "step"
    assert config.scheduler.get_last_lr() == [pytest.approx(0.1 * 0.5**3)]  # 6 steps, halved every 2
