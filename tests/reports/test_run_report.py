"""The report of a real short run (W&B offline): every figure exists and decodes, each figure's data equals what the
run recorded (checked against the offline W&B run, an independent record), and the page opens in a real browser
from the file system, with every image decoded and no network request."""
import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from main import main
from tests.callbacks.fixtures import measuring_callbacks_yaml
from reports import build, series
from reports.kinds import noisy_recall
from reports.__main__ import main as reports_main
from reports.run import ReportError, load_run
from tests.pipeline.test_cli import TINY, only_run_dir
from tests.reports.browser import open_page
from tests.wandb_records import read_run

CALLBACKS = measuring_callbacks_yaml("{targets: [layers.1.ff.w2], rho: 0.0, at_steps: [6]}")
FIGURES = {"metrics_over_training", "laser_sweep", "probes", "spectra", "ranks", "gradient_snr", "truncation", "memory_probes",
           "attention_example"}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report_run")
    (root / "callbacks.yaml").write_text(CALLBACKS)
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    main(["fit", *TINY, "--trainer.max_steps", "12", "--config", str(root / "callbacks.yaml"),
          "--model.init_args.early_eval_steps", "[0, 1, 3]", "--trainer.default_root_dir", str(root / "runs")])
    mp.undo()
    return only_run_dir(root / "runs")


def test_every_figure_is_written_and_decodes(run):
    start = time.perf_counter()
    page = build.report(run)
    assert time.perf_counter() - start < 30
    figures = run / "report" / "figures"
    assert {p.stem for p in figures.glob("*.png")} == FIGURES == {p.stem for p in figures.glob("*.pdf")}
    for png in figures.glob("*.png"):
        image = plt.imread(png)
        assert image.shape[0] > 200 and image.shape[1] > 300 and image.std() > 0.01, png.name  # not blank
    assert page == run / "report" / "index.html"


def test_each_figures_data_equals_the_recorded_metrics(run):
    record = load_run(run)
    summary = json.loads((run / "summary.json").read_text())
    wandb = read_run(str(run))["history"]
    logged = {}
    for row in wandb:  # the W&B record, written independently of metrics.csv
        step = row.get("trainer/global_step", row.get("_step"))
        for key, value in row.items():
            if isinstance(value, (int, float)):
                logged.setdefault(key, []).append((step, value))
    # the curves: metrics.csv's validation series end at the summary's final values, at the same steps as W&B's
    curves = series.eval_curves(record.history, "p_noise")
    assert list(curves)[0] == "full" and set(curves) == {"full", *(f"layers.1.ff.w2@rho{r}" for r in ("0", "0.1", "0.2"))}
    # from step 0 (the early evaluations at 0 and 1; 3 is a validation anyway), then the weights after 3, 6, 9, 12
    # steps (not Lightning's s - 1)
    assert [s for s, _ in curves["full"]] == [0, 1, 3, 6, 9, 12]
    assert [s for s, _ in logged["val/full/p_noise"]] == [0, 1, 3, 6, 9, 12]  # W&B's x axis is the same
    assert curves["full"][-1][1] == pytest.approx(summary["metrics"]["val/full/p_noise"], abs=1e-6)
    assert [v for _, v in curves["full"]] == pytest.approx([v for _, v in logged["val/full/p_noise"]], abs=1e-6)
    # the LASER sweep: the module's declared grid, rho 1 read from the full model
    sweep = noisy_recall.laser_grid(summary)
    assert [rho for rho, _ in sweep["layers.1.ff.w2"]] == [0.0, 0.1, 0.2, 1.0]
    assert sweep["layers.1.ff.w2"][0][1]["acc"] == summary["variants"]["layers.1.ff.w2@rho0"]["acc"]
    assert sweep["layers.1.ff.w2"][-1][1] == summary["variants"]["full"]
    # drawn at the rhos measured, one evenly spaced slot each: rho 0.2 and rho 1 are neighbours, nothing drawn between
    from reports.style import slots

    rhos, xs = slots({t: [rho for rho, _ in points] for t, points in sweep.items()})
    assert rhos == [0.0, 0.1, 0.2, 1.0] and xs["layers.1.ff.w2"] == [0, 1, 2, 3]
    # the marked steps: the first probe over threshold in the W&B record of the probes
    marks = noisy_recall.marked_steps(record.history)
    margin = [(s, v) for s, v in logged["probe/layers.1.ff/noise_margin"]]
    assert marks["ff_learns_noise:layers.1"] == next((s for s, v in margin if v > 0), None)
    induction = [(s, v) for s, v in logged["probe/layers.1.attn/to_output"]]
    assert marks["induction_head:layers.1"] == next((s for s, v in induction if v > 0.5), None)
    assert [s for s, _ in noisy_recall.probe_curves(record.history)["probe/layers.1.ff/noise_margin"]] == list(range(0, 13, 2))
    # spectra, SNR and the truncation come from spectra.npz and summary.json
    assert record.spectra["steps"].tolist() == [0, 3, 6, 9, 12]
    assert np.allclose(record.spectra["layers.1.ff.w2"][2], 0)  # truncated to rank 0 at step 6
    assert set(noisy_recall.gradient_snr(summary)) == {0, 3}
    (event,) = noisy_recall.truncations(summary)
    assert event["step"] == 6 and event["ranks"] == {"layers.1.ff.w2": 0}


def test_a_figure_whose_data_was_not_recorded_is_left_out_with_a_note(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    main(["fit", *TINY, "--trainer.callbacks=[]", "--trainer.default_root_dir", str(tmp_path)])
    run = only_run_dir(tmp_path)
    build.report(run)
    assert {p.stem for p in (run / "report" / "figures").glob("*.png")} == {"metrics_over_training", "laser_sweep"}
    page = (run / "report" / "index.html").read_text()
    assert "AttentionProbe was off in this run" in page and "WeightSpectrumLogger was off in this run" in page


def test_a_directory_that_is_neither_and_a_run_without_history_are_named(tmp_path, run):
    with pytest.raises(SystemExit, match=f"error: {tmp_path} is neither a run directory"):
        reports_main([str(tmp_path)])
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "summary.json").write_text((run / "summary.json").read_text())
    with pytest.raises(ReportError, match="no recorded history"):
        build.report(copy)
    assert not (copy / "report").exists()


def test_the_page_opens_from_the_file_system_in_a_real_browser(run, chromium, tmp_path):
    build.report(run)
    seen = open_page(str(run / "report" / "index.html"), str(tmp_path / "page.png"))
    assert seen["requests"] and all(u.startswith(("file://", "data:")) for u in seen["requests"]), seen["requests"]
    assert len(seen["image_widths"]) == len(FIGURES) and all(w > 0 for w in seen["image_widths"])
    shot = plt.imread(tmp_path / "page.png")
    assert shot.shape[0] > 1000 and shot.std() > 0.05  # a page with content, not a blank screenshot
    assert "Clean-test metrics over training" in seen["text"] and "layers.1.ff.w2@rho0" in seen["text"]


def test_the_wandb_link_is_the_sync_command_only_where_offline_files_exist(run, tmp_path, monkeypatch):
    page = build.report(run).read_text()
    offline = next(run.glob("wandb/offline-run-*"))
    assert f"wandb sync {offline.parent}" in page  # the offline run can be synced with exactly this
    monkeypatch.setenv("WANDB_MODE", "disabled")
    main(["fit", *TINY, "--trainer.callbacks=[]", "--trainer.default_root_dir", str(tmp_path / "runs")])
    disabled = only_run_dir(tmp_path / "runs")
    assert not (disabled / "wandb").exists()
    assert "wandb sync" not in build.report(disabled).read_text()  # no directory to sync: no command pointing at one


def test_the_page_renders_whatever_subset_of_callbacks_measured_something(run, tmp_path):
    from tests.reports.nothing_measured import variants

    seen = []
    for label, copy in variants(run, tmp_path):
        page = build.report(copy)  # raises on a crash: the case's label is in the traceback's locals
        assert page.is_file() and "<h1>" in page.read_text(), label
        seen.append(label)
    assert len(seen) == 6  # AttentionProbe, GradientNoise, LaserTruncation, MemoryProbe, WeightSpectrumLogger alone, then all
