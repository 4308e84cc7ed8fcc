"""Report figures of the knowledge-hijack sweep (accuracy against test length per encoding, the theory fit) and of
GSM8K runs (exact match by shots per variant): their data equal the recorded numbers, and the images are drawn."""
import matplotlib.pyplot as plt
import pytest

from reports import hijack_plots, plots, pretrained_plots, series


def test_accuracy_by_test_length_per_encoding_averages_seeds(tmp_path):
    rows = [{"task": i, "status": "completed", "model.init_args.model.positional": pe, "seed_everything": seed, "variant": "full",
             "acc@T64:anywhere": 0.9 + 0.02 * seed, "acc@T256:beyond": beyond + 0.1 * seed}
            for i, (pe, seed, beyond) in enumerate([("absolute", 0, 0.3), ("absolute", 1, 0.3), ("relative", 0, 0.7), ("relative", 1, 0.7)])]
    rows.append({"task": 9, "status": "completed", "model.init_args.model.positional": "relative", "variant": "layers.1.ff.w2@rho0",
                 "acc@T256:beyond": 0.0})  # other variants are not in the panel
    panels = series.sweep_length_generalisation(rows, "model.init_args.model.positional", [])
    assert set(panels) == {"anywhere", "beyond"}
    (length, mean, std, n), = panels["beyond"]["relative"]
    assert (length, n) == (256, 2) and mean == pytest.approx(0.75) and std == pytest.approx(0.0707, abs=1e-3)
    assert panels["beyond"]["absolute"][0][1] == pytest.approx(0.35)
    figs = plots.Figures(tmp_path, "")
    hijack_plots.sweep_length_generalisation(figs, rows, "model.init_args.model.positional", [])
    (fig,) = figs.figures
    assert fig.name == "length_generalisation_by_encoding" and plt.imread(fig.png).std() > 0.01


def test_the_theory_figure_draws_each_settings_fit(tmp_path):
    fit = {"w_ic": 20.0, "w_g": 1.5, "beta": 1.0, "r2": 0.95, "r2_attention": 0.99, "w_ic_attention": 5.0, "w_g_attention": 1.4,
           "n_points": 6, "by_length": {"T64": {"n": [0, 2, 8], "measured_gap": [-1.5, 0.2, 3.0], "predicted_gap": [-1.5, 0.1, 3.1],
                                                "predicted_boundary": 2, "measured_boundary": 2}}}
    summary = {"callbacks": {"HijackProbe": {"results": {}, "theory_fit": {"late": {"ff@rho1": fit}}}}}
    assert series.hijack_theory_fit(summary) == {"late ff@rho1": fit}
    figs = plots.Figures(tmp_path, "")
    hijack_plots.hijack_theory(figs, summary)
    (fig,) = figs.figures
    assert fig.name == "hijack_theory" and plt.imread(fig.png).std() > 0.01


def test_gsm8k_exact_match_by_shots(tmp_path):
    scores = {"test:1shot": {"full": {"em_flexible": 0.5, "em_flexible_stderr": 0.02, "em_strict": 0.4, "em_strict_stderr": 0.02},
                             "cut": {"em_flexible": 0.55, "em_flexible_stderr": 0.02, "em_strict": 0.45, "em_strict_stderr": 0.02}},
              "test:8shot": {"full": {"em_flexible": 0.6, "em_flexible_stderr": 0.02, "em_strict": 0.58, "em_strict_stderr": 0.02}},
              "selection:1shot": {"full": {"em_flexible": 0.9, "em_flexible_stderr": 0.0}}}
    summary = {"results": {"gsm8k": {"scores": scores}}}
    assert series.gsm8k_by_shots(summary) == {"full": [(1, 0.5, 0.02), (8, 0.6, 0.02)], "cut": [(1, 0.55, 0.02)]}
    assert series.gsm8k_by_shots(summary, split="selection") == {"full": [(1, 0.9, 0.0)]}
    figs = plots.Figures(tmp_path, "")
    pretrained_plots.gsm8k(figs, summary)
    (fig,) = figs.figures
    assert fig.name == "gsm8k" and plt.imread(fig.png).std() > 0.01


@pytest.mark.slow
def test_a_hijack_sweep_report_draws_each_encoding(tmp_path, monkeypatch):
    import yaml

    from pipeline import sweep
    from reports import build

    monkeypatch.setenv("WANDB_MODE", "disabled")
    spec = {"base": "configs/hijack.yaml", "grid": {
        "model.init_args.model.positional": ["absolute", "relative"], "seed_everything": [0, 1],
        "trainer.max_steps": [40], "trainer.val_check_interval": [40], "trainer.enable_progress_bar": [False],
        "data.init_args.n_test": [32], "data.init_args.test_lengths": [[64, 128]]}}
    path = tmp_path / "hijack_tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    sweep.main([str(path), "--root", str(tmp_path / "sweep")])
    page = build.report(tmp_path / "sweep")
    figures = {p.stem for p in (tmp_path / "sweep" / "report" / "figures").glob("*.png")}
    assert {"length_generalisation_by_encoding", "hijack_by_encoding"} <= figures
    html = page.read_text()
    assert "Hijack theory fit per task" in html and html.count("<tr>") > 4
    from reports import table

    rows = table.rows(tmp_path / "sweep")
    runs = build.task_runs(rows)
    rates = series.sweep_hijack_rates(runs, rows, "model.init_args.model.positional")
    assert set(rates["late T64"]) == {"absolute", "relative"}
    assert all(count == 2 for pts in rates["late T64"].values() for *_, count in pts)  # two seeds per encoding
