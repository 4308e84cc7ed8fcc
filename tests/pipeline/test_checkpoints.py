"""`--ckpt_path`: the config's settings win (new LASER settings are evaluated), an architecture that differs from the
checkpoint's is refused naming both values, and a missing or corrupt checkpoint is one clear line; nothing written."""
import json

import pytest
import torch
import yaml

from main import main
from tests.pipeline.test_cli import TINY, only_run_dir


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "disabled")
    main(["fit", *TINY, "--trainer.default_root_dir", str(root)])
    mp.undo()
    run = only_run_dir(root)
    (ckpt,) = (run / "checkpoints").glob("*.ckpt")
    return run, ckpt


def test_validate_evaluates_the_laser_settings_given_not_the_checkpoints(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    run, ckpt = trained
    main(["validate", *TINY, "--model.init_args.laser_rhos", "[0.0,0.5]", "--ckpt_path", str(ckpt),
          "--trainer.default_root_dir", str(tmp_path)])
    evaluated = only_run_dir(tmp_path)
    summary = json.loads((evaluated / "summary.json").read_text())
    assert set(summary["variants"]) == {"full", "layers.1.ff.w2@rho0", "layers.1.ff.w2@rho0.5"}
    assert yaml.safe_load((evaluated / "config.yaml").read_text())["model"]["init_args"]["laser_rhos"] == [0.0, 0.5]
    assert summary["untrained"] is False and summary["ckpt_path"] == str(ckpt)
    # the weights are the checkpoint's: the full model's numbers equal the training run's last validation
    fitted = json.loads((run / "summary.json").read_text())["variants"]["full"]
    assert summary["variants"]["full"]["p_noise"] == pytest.approx(fitted["p_noise"], abs=1e-6)


@pytest.mark.parametrize("subcommand", ["fit", "validate"])
def test_a_different_architecture_is_refused_naming_both_values(trained, tmp_path, capsys, monkeypatch, subcommand):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    _, ckpt = trained
    with pytest.raises(SystemExit) as exit_info:
        main([subcommand, *TINY, "--model.init_args.model.dim", "32", "--ckpt_path", str(ckpt),
              "--trainer.default_root_dir", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"--ckpt_path {ckpt}" in err and "model.init_args.model.dim: the config says 32, the checkpoint has 16" in err
    assert not any(tmp_path.iterdir())


def test_a_missing_checkpoint_is_named_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", *TINY, "--ckpt_path", str(tmp_path / "nope.ckpt"), "--trainer.default_root_dir", str(tmp_path / "runs")])
    assert exit_info.value.code == 2
    assert f"error: --ckpt_path {tmp_path / 'nope.ckpt'}: no such file" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", "truncated"])
def test_a_corrupt_checkpoint_is_one_line_naming_the_file(trained, tmp_path, capsys, monkeypatch, content):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(trained[1].read_bytes()[:2000] if content == "truncated" else content)
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", *TINY, "--ckpt_path", str(bad), "--trainer.default_root_dir", str(tmp_path / "runs")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"error: --ckpt_path {bad}: not a readable Lightning checkpoint" in err
    assert "weights_only" not in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_a_torch_file_that_is_no_lightning_checkpoint_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "w.pt")
    with pytest.raises(SystemExit):
        main(["validate", *TINY, "--ckpt_path", str(tmp_path / "w.pt"), "--trainer.default_root_dir", str(tmp_path / "runs")])
    assert "not a Lightning checkpoint (no state_dict)" in capsys.readouterr().err


@pytest.mark.parametrize("subcommand", ["test", "validate"])
def test_evaluation_without_a_checkpoint_says_the_model_is_untrained(tmp_path, capsys, monkeypatch, subcommand):
    from reports import build

    monkeypatch.setenv("WANDB_MODE", "disabled")
    main([subcommand, *TINY, "--trainer.default_root_dir", str(tmp_path)])
    out = capsys.readouterr()
    assert "evaluates the model at its random initialisation (untrained)" in out.err
    # and at the end, beside the results: not only a warning scrolled away at the start
    assert "Untrained: these numbers are of the model's random initialisation (no --ckpt_path was given)." in out.out
    summary = json.loads((only_run_dir(tmp_path) / "summary.json").read_text())
    assert summary["untrained"] is True and summary["weights"] == "random initialisation"
    assert "Untrained: the numbers are of the random initialisation" in build.report(only_run_dir(tmp_path)).read_text()


def test_the_precision_that_ran_is_recorded_not_the_one_asked_for(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    main(["fit", *TINY, "--trainer.precision", "16-mixed", "--trainer.accelerator", "cpu",
          "--trainer.default_root_dir", str(tmp_path)])
    summary = json.loads((only_run_dir(tmp_path) / "summary.json").read_text())
    # Lightning runs fp16 autocast as bf16 on a CPU: the record says what ran
    assert summary["machine"]["precision"] == "bf16-mixed" and summary["machine"]["device"] == "cpu"
    assert summary["machine"]["torch"] == torch.__version__ and summary["machine"]["torch_threads"] == torch.get_num_threads()


def test_fit_from_a_checkpoint_with_another_config_starts_a_new_run_and_keeps_the_old_one(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    run, ckpt = trained
    before = (run / "summary.json").read_text()
    main(["fit", *TINY, "--trainer.max_steps", "8", "--ckpt_path", str(ckpt), "--trainer.default_root_dir", str(tmp_path)])
    assert (run / "summary.json").read_text() == before  # nothing already written is lost
    summary = json.loads((only_run_dir(tmp_path) / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["global_step"] == 8
