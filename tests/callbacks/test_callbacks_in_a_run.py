"""All four callbacks added in YAML to a `main.py fit` run: what reaches the offline W&B run, spectra.npz and
summary.json, read back from the files."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from main import main
from tests.callbacks.fixtures import measuring_callbacks_yaml
from tests.pipeline.test_cli import TINY, only_run_dir
from tests.wandb_records import read_run, run_file

CALLBACKS = measuring_callbacks_yaml("{targets: [layers.1.ff.w2], rank: 1, at_steps: [4]}")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("callbacks_run")
    (root / "callbacks.yaml").write_text(CALLBACKS)
    main(["fit", *TINY, "--config", str(root / "callbacks.yaml"), "--trainer.default_root_dir", str(root / "runs")])
    return only_run_dir(root / "runs")


def test_spectra_npz_equals_svdvals_of_the_checkpointed_weights(run):
    spectra = np.load(run / "spectra.npz")
    assert spectra["steps"].tolist() == [0, 3, 6]
    (ckpt,) = (run / "checkpoints").glob("*.ckpt")
    state = torch.load(ckpt, weights_only=True)
    row = spectra["steps"].tolist().index(state["global_step"])
    trainable = [k for k, v in state["state_dict"].items() if v.ndim == 2 and k.removeprefix("net.") in spectra]
    assert len(trainable) == 10  # wq wk wv wo x 2 layers, w1 w2 of layer 2's MLP (embeddings are frozen)
    for key in trainable:
        expected = torch.linalg.svdvals(state["state_dict"][key]).numpy()
        np.testing.assert_allclose(spectra[key.removeprefix("net.")][row], expected, rtol=1e-5, atol=1e-6)


def test_wandb_run_holds_spectrum_scalars_charts_snr_and_probes(run):
    logged = read_run(str(run))
    by_step: dict[int, dict] = {}
    for h in logged["history"]:
        if "trainer/global_step" in h:
            by_step.setdefault(int(h["trainer/global_step"]), {}).update(h)
    spectra = np.load(run / "spectra.npz")
    w2 = spectra["layers.1.ff.w2"]
    for row, step in enumerate(spectra["steps"]):
        assert by_step[step]["spectrum/layers.1.ff.w2/top"] == pytest.approx(float(w2[row][0]), rel=1e-5)
        s = w2[row].astype(np.float64)
        assert by_step[step]["spectrum/layers.1.ff.w2/stable_rank"] == pytest.approx((s**2).sum() / s[0] ** 2, rel=1e-5)
        # the W&B histogram of the singular values (its panel draws the spectrum against the step)
        bins, counts = (by_step[step][f"spectrum/layers.1.ff.w2/histogram/{k}"] for k in ("bins", "values"))
        assert sum(counts) == 16 and bins[0] == pytest.approx(s.min(), rel=1e-5) and bins[-1] == pytest.approx(s.max(), rel=1e-5)
    # the line chart (logged at the end of training) is a W&B table: one line per logged step
    files = Path(run_file(str(run))).parent / "files"
    table = json.loads((files / by_step[6]["spectrum/layers.1.ff.w2/chart_table/path"]).read_text())
    lines: dict[str, list[float]] = {}
    for index, key, value in table["data"]:
        lines.setdefault(key, []).append(value)
    assert sorted(lines) == ["step 0", "step 3", "step 6"]
    np.testing.assert_allclose(lines["step 6"], w2[2], rtol=1e-6)

    for step in (0, 3):
        for group in ("layers.1.ff", "layers.0.attn.wk", "layers.1.attn.wo"):
            mean, std, snr = (by_step[step][f"gradnoise/{group}/{k}"] for k in ("mean", "std", "snr"))
            assert std > 0 and snr == pytest.approx(mean / std)
    for step in (0, 2, 4, 6):
        assert 0 < by_step[step]["probe/layers.0.attn/prev_token"] < 1
        assert 0 <= by_step[step]["probe/layers.1.attn/to_noise"] < 1
        assert "probe/layers.1.ff/noise_margin" in by_step[step]
    assert by_step[4]["laser/before/loss"] != pytest.approx(by_step[4]["laser/after/loss"])
    # the W&B report has a panel for the page's headline figures (LASER against rho, the gradient SNR), and every
    # key it plots is one this W&B run logged
    from reports import wandb_report
    from reports.run import load_run

    panels = {p["title"]: p for p in wandb_report.panels_for_run(load_run(run))}
    assert panels["LASER at the end of training: p_noise per variant"]["y"] == [
        f"val/{v}/p_noise" for v in ("full", "layers.1.ff.w2@rho0", "layers.1.ff.w2@rho0.1", "layers.1.ff.w2@rho0.2")]
    keys = {k for h in logged["history"] for k in h}
    snr = panels["gradient signal-to-noise per parameter group"]["y"]
    assert set(snr) == {k for k in keys if k.startswith("gradnoise/") and k.endswith("/snr")}
    assert {f"gradnoise/{g}/snr" for g in ("layers.1.ff", "layers.0.attn.wk", "layers.1.attn.wo")} <= set(snr)
    assert {k for p in panels.values() for k in p["y"]} <= keys


def test_summary_json_collects_what_the_callbacks_measured(run):
    summary = json.loads((run / "summary.json").read_text())["callbacks"]
    (event,) = summary["laser_truncation"]["events"]
    assert event["step"] == 4 and event["ranks"] == {"layers.1.ff.w2": 1}
    assert summary["weight_spectrum"]["steps"] == 3 and summary["weight_spectrum"]["file"] == str(run / "spectra.npz")
    assert set(summary["gradient_noise"]) == {"0", "3"}
    assert summary["attention_probe"]["step"] == 6
    # the end-of-training example: one sequence's causal attention patterns, full model and the most truncated variant
    example = summary["attention_probe"]["example"]
    with np.load(run / example["file"]) as z:
        patterns = {k: z[k] for k in z.files}
    assert example["variants"] == ["full", "layers.1.ff.w2@rho0"] and set(patterns) == {"patterns:full", "patterns:layers.1.ff.w2@rho0"}
    width = len(example["tokens"])
    assert width == example["query"] - example["start"] + 1 == len(example["roles"])
    full = patterns["patterns:full"]
    assert full.shape == (2, width, width) and np.allclose(np.triu(full, 1), 0)  # causal
    if example["start"] == 0:
        assert np.allclose(full.sum(-1), 1, atol=1e-5)  # the whole prefix: each query's weights sum to 1
    # truncating layer 2's FF, after its attention, changes no pattern
    assert np.allclose(full, patterns["patterns:layers.1.ff.w2@rho0"], atol=1e-6)
    assert all(len(example["top"][v]) == 3 for v in example["variants"])
    assert [r for t, r in zip(example["tokens"], example["roles"]) if t == example["noise_id"]] == \
        ["noise"] * example["tokens"].count(example["noise_id"])


def test_measuring_does_not_change_the_experiment(tmp_path, monkeypatch):
    """The callbacks draw their probe batches from their own generators: training is bit-for-bit the same."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    measuring_only = CALLBACKS.replace(
        "    - class_path: callbacks.LaserTruncation\n      init_args: {targets: [layers.1.ff.w2], rank: 1, at_steps: [4]}\n", ""
    )
    assert "LaserTruncation" not in measuring_only
    (tmp_path / "callbacks.yaml").write_text(measuring_only)
    main(["fit", *TINY, "--config", str(tmp_path / "callbacks.yaml"), "--trainer.default_root_dir", str(tmp_path / "with")])
    main(["fit", *TINY, "--trainer.callbacks=[]", "--trainer.default_root_dir", str(tmp_path / "without")])
    with_cb = json.loads((only_run_dir(tmp_path / "with") / "summary.json").read_text())
    without = json.loads((only_run_dir(tmp_path / "without") / "summary.json").read_text())
    assert {"weight_spectrum", "gradient_noise", "attention_probe"} <= set(with_cb["callbacks"]) and not without["callbacks"]
    for key, value in without["metrics"].items():
        assert with_cb["metrics"][key] == pytest.approx(value, abs=1e-6), key


def test_a_callback_pattern_that_matches_nothing_stops_the_run_before_training(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text(CALLBACKS.replace("targets: [layers.1.ff.w2]", "targets: [layers.2.ff.w2]"))
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *TINY, "--config", str(tmp_path / "bad.yaml"), "--trainer.default_root_dir", str(tmp_path / "runs")])
    assert exit_info.value.code == 2
    assert "'layers.2.ff.w2' matches no matrix" in capsys.readouterr().err
    assert not list((tmp_path / "runs").glob("*/*/summary.json"))


def test_memory_probe_records_what_the_checkpointed_weights_recall(run):
    """MemoryProbe's last values (step 6) are the memory probes of the weights the run checkpointed at step 6."""
    from callbacks import MemoryProbe
    from datamodules import NoisyRecallDataModule
    from lightning_modules import NoisyRecallModule

    summary = json.loads((run / "summary.json").read_text())["callbacks"]["memory_probe"]
    assert summary["step"] == 6 and summary["calls"] == 3  # steps 0, 3, 6
    (ckpt,) = (run / "checkpoints").glob("*.ckpt")
    module = NoisyRecallModule.load_from_checkpoint(ckpt, map_location="cpu")
    config = __import__("yaml").safe_load((run / "config.yaml").read_text())["data"]["init_args"]
    bigram = config.pop("bigram")
    from datamodules.bigram import SyntheticBigram
    dm = NoisyRecallDataModule(bigram=SyntheticBigram(**bigram["init_args"]), **config)
    expected = MemoryProbe.probe(module.net, dm.gen, dm.seq_len)
    # per layer: positional (3) and output (2) memories; layer 1 also the induction keys (2); the FF's global memory (3)
    assert set(expected) <= set(summary) and len(expected) == 5 + 7 + 3
    for key, value in expected.items():
        assert summary[key] == (None if value is None else pytest.approx(value, abs=1e-6)), key
    # noisy recall's fixed trigger maps to the noise token: the global memory is asked about the trigger alone
    assert 0.0 <= summary["memory/layers.1.ff/global_top1"] <= 1.0 and summary["memory/layers.1.ff/global_kl"] > 0
