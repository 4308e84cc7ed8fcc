"""Reports of pretrained-model results: per-variant bars by prompt type for a run, and the revision-sweep curves."""
import matplotlib.pyplot as plt

from reports import build, plots, pretrained_plots, series
from tests.pipeline.test_pretrained_cli import run_test
from tests.pipeline.test_cli import only_run_dir


def test_a_pretrained_run_gets_bars_by_prompt_type(tiny_hf, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    summary = run_test("configs/pythia_ioi.yaml", tiny_hf["gpt_neox"], tmp_path, "--data.init_args.n_prompts", "24")
    run = only_run_dir(tmp_path)
    build.report(run)
    bars = series.prompt_type_bars(summary, "p_answer")
    assert set(bars) == {"full", "late_mlp_out", "all_mlp_in"} and set(bars["full"]) == {"ABBA", "BABA"}
    assert bars["full"]["ABBA"] == summary["variants"]["full:ABBA"]["p_answer"]
    assert plt.imread(run / "report" / "figures" / "prompt_types.png").std() > 0.01
    assert "the run logged no validation metrics" in (run / "report" / "index.html").read_text()


def test_a_revision_sweep_is_drawn_against_the_training_step(tmp_path):
    rows = [{"task": i, "status": "completed", "model.init_args.revision": rev, "variant": v, "p_answer": p, "p_generic": 0.1,
             "log_ratio": 0.5, "logit_diff": 1.0}
            for i, (rev, p) in enumerate([("step0", 0.01), ("step1000", 0.2), ("step143000", 0.6)]) for v in ("full", "cut")]
    assert [series.revision_step(r) for r in ("step0", "step512", "main", "v1")] == [0, 512, 143000, None]
    figs = plots.Figures(tmp_path, "")
    pretrained_plots.revision_sweep(figs, rows, "model.init_args.revision")
    (fig,) = figs.figures
    assert fig.name == "revisions" and plt.imread(fig.png).std() > 0.01
    lines = series.final_vs_key([r | {"_step": series.revision_step(r["model.init_args.revision"])} for r in rows], "_step", "p_answer")
    assert [(x, m) for x, m, _, _ in lines["full"]] == [(0, 0.01), (1000, 0.2), (143000, 0.6)]


def test_the_wandb_report_of_a_pythia_run_plots_its_test_metrics(tiny_hf, tmp_path, monkeypatch):
    from reports import wandb_report
    from reports.__main__ import main as reports_main

    monkeypatch.setenv("WANDB_MODE", "offline")
    summary = run_test("configs/pythia_ioi.yaml", tiny_hf["gpt_neox"], tmp_path, "--data.init_args.n_prompts", "24")
    run = only_run_dir(tmp_path)
    reports_main([str(run), "--entity", "my-team"])  # (this failed before: it asked for val/ keys a test run never logs)
    spec, _ = wandb_report.load(run / "report" / wandb_report.SPEC_FILE)
    titles = {p["title"]: p["y"] for p in spec["panels"]}
    assert set(titles["logit_diff per variant"]) == {f"test/{v}/logit_diff" for v in ("full", "late_mlp_out", "all_mlp_in")}
    assert {k for p in spec["panels"] for k in p["y"]} <= set(summary["metrics"])
