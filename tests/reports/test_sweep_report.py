"""The report of a sweep of 4 tiny tasks, one of them made to fail: one line per variant, the failure listed, the
table with run directories and mean +- std over seeds; and the W&B report built offline from the same records."""
import csv
import json
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import matplotlib.pyplot as plt
import pytest
import yaml

from pipeline import sweep
from reports import build, series, table, wandb_report
from reports.__main__ import main as reports_main
from reports.run import ReportError, load_run
from tests.pipeline.test_sweep import TINY_GRID
from tests.reports.browser import open_page
from tests.wandb_records import read_run

VARIANTS = {"full", "layers.1.ff.w2@rho0", "layers.1.ff.w2@rho0.1", "layers.1.ff.w2@rho0.2"}  # rho 1 is the full model


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep_report")
    path = root / "four.yaml"
    # alpha 7 parses (a float) and fails in the datamodule: one failed task out of 4
    grid = TINY_GRID | {"data.init_args.alpha": [0.0, 0.9, 7.0], "seed_everything": [0, 1]}
    del grid["trainer.max_steps"]  # fixed for every task: an override, not a grid column
    path.write_text(yaml.safe_dump({"base": "configs/noisy.yaml", "grid": grid, "overrides": {"trainer.max_steps": 3}}))
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    with pytest.raises(SystemExit, match="2 of 6 tasks failed"):
        sweep.main([str(path), "--root", str(root / "sweep")])
    mp.undo()
    return root / "sweep"


def test_the_sweep_table_has_run_directories_eval_steps_and_mean_std_over_seeds(swept):
    rows = list(csv.DictReader(open(swept / "results.csv")))
    assert "trainer.max_steps" not in rows[0] and "data.init_args.alpha" in rows[0]  # the override is no column
    done = [r for r in rows if r["status"] == "completed"]
    assert len({r["task"] for r in done}) == 4 and all(r["run_dir"] and r["eval_step"] == "3" for r in done)
    by = list(csv.DictReader(open(swept / table.BY_SETTING_FILE)))
    assert {(r["data.init_args.alpha"], r["n"]) for r in by} == {("0.0", "2"), ("0.9", "2")}
    full = {r["data.init_args.alpha"]: r for r in by if r["variant"] == "full"}
    values = [float(r["p_noise"]) for r in done if r["variant"] == "full" and r["data.init_args.alpha"] == "0.9"]
    assert float(full["0.9"]["p_noise_mean"]) == pytest.approx(sum(values) / 2)


def test_sweep_figures_hold_one_line_per_variant_and_the_failure_is_listed(swept, chromium, tmp_path):
    start = time.perf_counter()
    page = build.report(swept)
    assert time.perf_counter() - start < 60
    rows = table.rows(swept)
    lines = series.final_vs_key(rows, "data.init_args.alpha", "p_noise")
    assert set(lines) == VARIANTS  # one line per variant
    assert [(x, n) for x, _, _, n in lines["full"]] == [(0.0, 2), (0.9, 2)]  # the failed alpha has no point
    figures = {p.stem for p in (swept / "report" / "figures").glob("*.png")}
    assert figures == {"final_vs_data_init_args_alpha", "curves_p_noise"}
    for png in (swept / "report" / "figures").glob("*.png"):
        assert plt.imread(png).std() > 0.01
    failed = series.failed_tasks(rows)
    assert [f["task"] for f in failed] == [4, 5] and all("data.alpha must be in [0, 1], got 7.0" in f["error"] for f in failed)
    seen = open_page(str(page), str(tmp_path / "sweep.png"))
    assert all(u.startswith(("file://", "data:")) for u in seen["requests"]) and all(w > 0 for w in seen["image_widths"])
    assert "Tasks that did not complete" in seen["text"] and "data.alpha must be in [0, 1], got 7.0" in seen["text"]
    assert "Fixed for every task (the sweep file's overrides): trainer.max_steps = 3." in seen["text"]
    # every task with a run links to its page (built here: the tasks ran with report: false), and the links resolve
    run_dirs = {r["task"]: r["run_dir"] for r in rows if r.get("run_dir")}
    pages = sorted(Path(unquote(urlparse(u).path)).resolve() for u in seen["links"] if u.endswith("/report/index.html"))
    assert pages == sorted((Path(d) / "report" / "index.html").resolve() for d in run_dirs.values())
    assert len(pages) == 4 and all(p.is_file() for p in pages)  # the 2 failed tasks stopped before their run began
    assert seen["text"].count("no run directory") == 2


def test_a_variant_has_one_colour_and_label_on_every_figure_of_the_sweep_and_its_task_pages(swept):
    from reports.style import PALETTE

    build.report(swept)
    seen: dict[str, set] = {}
    task_pages = sorted(Path(r["run_dir"]) / "report" for r in table.rows(swept) if r.get("status") == "completed")
    for report in [swept / "report", *task_pages]:
        for figure in json.loads((report / "figures.json").read_text()):
            for label, colour in figure["legend"].items():
                seen.setdefault(label, set()).add(colour)
    labels = {"full model"} | (VARIANTS - {"full"})
    assert labels <= set(seen)  # every variant is drawn, under its name (the full model as "full model")
    assert all(len(seen[v]) == 1 for v in labels), {v: seen[v] for v in labels}
    assert seen["full model"] == {"#000000"}
    colours = [next(iter(seen[v])) for v in sorted(labels - {"full model"})]
    assert len(set(colours)) == len(colours) and set(colours) <= set(PALETTE)  # distinct, none grey, none yellow
    # the sweep's curves: every variant, the mean over the seeds of each setting, between the seeds' extremes
    runs = build.load_sweep(swept).runs
    settings = {t: table.rows(swept) and runs[t].summary["sweep_task"]["point"]["data.init_args.alpha"] for t in runs}
    curves = series.setting_curves(runs, settings, "p_noise")
    assert set(curves[0.9]) == VARIANTS
    last = [dict(series.eval_curves(runs[t].history, "p_noise")["layers.1.ff.w2@rho0"])[3] for t in runs if settings[t] == 0.9]
    step, mean, low, high, n = curves[0.9]["layers.1.ff.w2@rho0"][-1]
    assert (step, n) == (3, 2) and mean == pytest.approx(sum(last) / 2) and (low, high) == (min(last), max(last))


def test_the_wandb_report_is_built_offline_and_references_only_logged_keys(swept, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    reports_main([str(swept), "--entity", "my-team"])
    exported = swept / "report" / wandb_report.SPEC_FILE
    spec, report = wandb_report.load(exported)  # round-trips into a report object
    assert report.title == spec["title"] and spec["entity"] == "my-team" and spec["project"] == "ff-vs-attention"
    assert spec["group"] is None or isinstance(spec["group"], str)
    panel_keys = {k for p in spec["panels"] for k in p["y"]}
    # every key a panel plots was logged to W&B by the runs (read back from the offline run files)
    logged = set()
    for r in {r["task"]: r for r in table.rows(swept) if r.get("run_dir")}.values():
        logged |= {k for row in read_run(r["run_dir"])["history"] for k in row}
    assert panel_keys and panel_keys <= logged, panel_keys - logged
    bad = [dict(spec["panels"][0], y=["val/full/p_nois"])]
    with pytest.raises(ReportError, match="val/full/p_nois"):
        wandb_report.check_keys(bad, logged)


def test_wandb_without_network_or_key_fails_within_seconds_naming_the_route(swept, monkeypatch, tmp_path):
    for var in ("WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "cfg"))
    start = time.perf_counter()
    with pytest.raises(SystemExit, match="no W&B credentials.*--wandb-save"):
        reports_main([str(swept), "--wandb", "--entity", "my-team"])
    assert time.perf_counter() - start < 30
    assert (swept / "report" / wandb_report.SPEC_FILE).is_file()  # the spec is written for a later save
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    start = time.perf_counter()
    with pytest.raises(SystemExit, match="did not answer within 3 s.*--wandb-save"):
        reports_main(["--wandb-save", str(swept / "report" / wandb_report.SPEC_FILE)])
    assert time.perf_counter() - start < 15


def test_a_run_report_spec_uses_the_runs_logged_keys(swept):
    task0 = next(r for r in table.rows(swept) if r["task"] == 0)
    run = load_run(task0["run_dir"])
    panels = wandb_report.panels_for_run(run)
    wandb_report.check_keys(panels, set(run.history))
    assert json.dumps(panels)


def test_event_steps_across_a_sweep_per_seed_with_the_probe_resolution(tmp_path):
    from reports.kinds import SweepRecord, noisy_recall
    from reports.page import Page
    from reports.run import RunRecord

    def history(ff_step, induction_step):  # probes every 50 steps; the events at the given steps
        steps = range(0, 501, 50)
        return {"probe/layers.1.ff/noise_margin": [(s, 1.0 if s >= ff_step else -1.0) for s in steps],
                "probe/layers.1.attn/to_output": [(s, 0.9 if s >= induction_step else 0.1) for s in steps]}

    cases = [(16, 0, 100, 300), (16, 1, 150, 300), (512, 0, 50, 250), (512, 1, 50, 200)]
    runs = {i: RunRecord(tmp_path, {"kinds": ["noisy_recall"]}, {}, history(f, a)) for i, (_, _, f, a) in enumerate(cases)}
    points = [{"model.init_args.model.ff_width": w, "seed_everything": s} for w, s, _, _ in cases]
    sweep = SweepRecord(tmp_path, [], points, ["model.init_args.model.ff_width", "seed_everything"],
                        ["model.init_args.model.ff_width"], runs)
    events = noisy_recall.event_steps(sweep, "model.init_args.model.ff_width")
    assert sorted(events["ff_learns_noise:layers.1"]) == [(16, 100, "seed_everything=0"), (16, 150, "seed_everything=1"),
                                                          (512, 50, "seed_everything=0"), (512, 50, "seed_everything=1")]
    assert sorted(s for w, s, _ in events["induction_head:layers.1"] if w == 512) == [200, 250]
    page = Page("t", tmp_path / "figures", "")
    noisy_recall.sweep_events(page, sweep, "model.init_args.model.ff_width")
    (figure,) = page.figures
    assert figure.name == "events_ff_width" and "dated to within 50 steps" in figure.caption


def test_the_attribution_against_a_swept_key_draws_each_tasks_parts_and_their_mean(tmp_path):
    from reports import attribution
    from reports.kinds import SweepRecord
    from reports.page import Page
    from reports.run import RunRecord

    def summary(top, tail):
        m = {"top_gap": top, "tail_gap": tail, "top_gap_ci": [top - 0.5, top + 0.5], "tail_gap_ci": [tail - 0.2, tail + 0.2]}
        return {"kinds": ["noisy_recall"], "callbacks": {"singular_attribution": {"matrices": {"layers.1.ff.w2": m}}}}

    cases = [(16, 0, 4.0, -1.0), (16, 1, 3.0, 1.0), (512, 0, 5.5, -4.0), (512, 1, 5.0, -4.5)]
    runs = {i: RunRecord(tmp_path, summary(top, tail), {}, {}) for i, (_, _, top, tail) in enumerate(cases)}
    points = [{"model.init_args.model.ff_width": w, "seed_everything": s} for w, s, _, _ in cases]
    sweep = SweepRecord(tmp_path, [], points, ["model.init_args.model.ff_width", "seed_everything"],
                        ["model.init_args.model.ff_width"], runs)
    page = Page("t", tmp_path / "figures", "")
    attribution.sweep_figure(page, sweep, "model.init_args.model.ff_width")
    (figure,) = page.figures
    assert figure.name == "attribution_vs_ff_width" and "95% interval" in figure.caption
    (points,) = attribution.sweep_parts(sweep, "model.init_args.model.ff_width").values()
    assert attribution.part_means(points, "top_gap") == [(16, 3.5), (512, 5.25)]
    assert attribution.part_means(points, "tail_gap") == [(16, 0.0), (512, -4.25)]
    nothing = SweepRecord(tmp_path, [], points, ["model.init_args.model.ff_width"], ["model.init_args.model.ff_width"],
                          {i: RunRecord(tmp_path, {"kinds": ["noisy_recall"]}, {}, {}) for i in range(4)})
    page = Page("t", tmp_path / "figures2", "")
    attribution.sweep_figure(page, nothing, "model.init_args.model.ff_width")
    assert not page.figures  # no task attributed: no figure, and no crash
