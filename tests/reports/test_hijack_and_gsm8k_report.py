"""The knowledge-hijack pages (a run and the 4-task sweep of configs/hijack.yaml over two encodings and two seeds) and
a GSM8K page: each shows its own experiment, its figures' data equal the recorded numbers, and each page opens in a
real browser from the file system."""
import matplotlib.pyplot as plt
import pytest

from reports import build, table
from reports.kinds import gsm8k, knowledge_hijack
from reports.page import Page
from tests.reports.browser import open_page


def test_accuracy_by_test_length_per_encoding_averages_seeds(tmp_path):
    def summary(acc, beyond):
        sets = [{"name": None, "length": 64, "placement": "main"}, {"name": "T256:beyond", "length": 256, "placement": "beyond"}]
        return {"kinds": ["knowledge_hijack"], "results": {"test_sets": sets, "t_train": 64},
                "variants": {"full": {"acc": acc, "acc@T256:beyond": beyond}, "layers.1.ff.w2@rho0": {"acc@T256:beyond": 0.0}}}

    from reports.kinds import SweepRecord
    from reports.run import RunRecord

    cases = [("absolute", 0, 0.3), ("absolute", 1, 0.3), ("relative", 0, 0.7), ("relative", 1, 0.7)]
    runs = {i: RunRecord(tmp_path, summary(0.9 + 0.02 * seed, beyond + 0.1 * seed), {}, {}) for i, (pe, seed, beyond) in enumerate(cases)}
    points = [{knowledge_hijack.ENCODING: pe, "seed_everything": seed} for pe, seed, _ in cases]
    sweep = SweepRecord(tmp_path, [], points, [knowledge_hijack.ENCODING, "seed_everything"], [knowledge_hijack.ENCODING], runs)
    panels = knowledge_hijack.sweep_length(sweep)
    assert set(panels) == {"beyond"}
    (beyond,) = panels["beyond"]["relative"]  # T256 alone (no point at T_train), full model only
    assert beyond[:1] == (256,) and beyond[3] == 2
    assert beyond[1] == pytest.approx(0.75) and beyond[2] == pytest.approx(0.0707, abs=1e-3)
    assert panels["beyond"]["absolute"][0][1] == pytest.approx(0.35)


def test_gsm8k_exact_match_by_shots(tmp_path):
    n = {"n_docs": 100.0}
    scores = {"test:1shot": {"full": {"em_flexible": 0.5, "em_flexible_stderr": 0.02, "em_strict": 0.4, "em_strict_stderr": 0.02, **n},
                             "cut": {"em_flexible": 0.55, "em_flexible_stderr": 0.02, "em_strict": 0.45, "em_strict_stderr": 0.02, **n}},
              "test:8shot": {"full": {"em_flexible": 0.6, "em_flexible_stderr": 0.02, "em_strict": 0.58, "em_strict_stderr": 0.02, **n}},
              "selection:1shot": {"full": {"em_flexible": 0.0, "em_flexible_stderr": 0.0, "n_docs": 8.0}}}
    summary = {"kinds": ["gsm8k"], "results": {"gsm8k": {"scores": scores}}}
    points = gsm8k.by_shots(summary)
    assert {v: [p[:2] for p in pts] for v, pts in points.items()} == {"full": [(1, 0.5), (8, 0.6)], "cut": [(1, 0.55)]}
    # Wilson's 95% interval over the 100 problems: 0.5 of 100 -> [0.404, 0.596] (a table value)
    assert points["full"][0][2] == pytest.approx([0.4038, 0.5962], abs=1e-4)
    # 0 of 8 right: an interval inside [0, 1], not 0 +- 1.96 x 0
    (selection,) = gsm8k.by_shots(summary, split="selection")["full"]
    assert selection[2][0] == 0.0 and selection[2][1] == pytest.approx(0.3244, abs=1e-4)
    from reports.run import RunRecord

    page = Page("t", tmp_path)
    gsm8k.run_page(page, RunRecord(tmp_path, summary, {}, {}))
    (fig,) = page.figures
    assert fig.name == "gsm8k" and plt.imread(fig.png).std() > 0.01
    assert "95% Wilson intervals over the problems" in fig.caption and "Mean over 100 test problems" in fig.caption
    # the shot counts are slots: one count alone sits at its tick (not at the panel's edges), variants beside it
    shots, xs = gsm8k.shot_slots({"full": [(1, 0.5, 0.0)], "cut": [(1, 0.4, 0.0)]})
    assert shots == [1] and xs["full"][0] < 0 < xs["cut"][0] and max(abs(x) for v in xs.values() for x in v) <= 0.1
    shots, xs = gsm8k.shot_slots(gsm8k.by_shots(summary))
    assert shots == [1, 8] and [round(x) for x in xs["full"]] == [0, 1] and [round(x) for x in xs["cut"]] == [0]


@pytest.fixture
def hijack_sweep(hijack_pe_sweep):
    return hijack_pe_sweep["root"]  # tests/conftest.py: configs/hijack.yaml, 2 encodings x 2 seeds


@pytest.mark.slow
@pytest.mark.xdist_group("hijack")  # the runs of the length-generalisation test
def test_the_hijack_run_page_shows_its_experiment_and_no_noise_panels(hijack_sweep, chromium, tmp_path):
    row = next(r for r in table.rows(hijack_sweep) if r["task"] == 0)
    page = build.report(row["run_dir"])
    figures = {p.stem for p in (page.parent / "figures").glob("*.png")}
    assert {"length_generalisation", "hijack", "hijack_logit_split", "hijack_theory", "prev_token", "hijack_competing",
            "memory_probes"} <= figures
    assert not figures & {"metrics_over_training", "laser_sweep"}  # the noise study's figures are not this experiment's
    seen = open_page(str(page), str(tmp_path / "hijack_run.png"))
    text = seen["text"].split("\nConfig")[0]  # the page, not the config it ends with (its keys name the noise token)
    assert "P(noise" not in text and "noise token" not in text and "evaluated no LASER variant" not in text
    assert text.index("Accuracy by test length and placement") < text.index("Knowledge hijack: the in-context answer")
    assert "Previous-token attention of Layer 1 (layers.0), inside and beyond" in text
    assert "The hijack boundary with k pairs (q, b) in context" in text and "What the weights store" in text
    assert all(u.startswith(("file://", "data:")) for u in seen["requests"]) and all(w > 0 for w in seen["image_widths"])


@pytest.mark.slow
@pytest.mark.xdist_group("hijack")  # the runs of the length-generalisation test
def test_the_hijack_sweep_page_compares_the_encodings(hijack_sweep, chromium, tmp_path):
    page = build.report(hijack_sweep)
    figures = {p.stem for p in (hijack_sweep / "report" / "figures").glob("*.png")}
    assert {"length_generalisation_by_encoding", "hijack_by_encoding"} <= figures
    sweep = build.load_sweep(hijack_sweep)
    rates = knowledge_hijack.sweep_rates(sweep)
    assert set(rates["late T64"]) == {"absolute", "relative"}
    assert all(count == 2 for pts in rates["late T64"].values() for *_, count in pts)  # two seeds per encoding
    seen = open_page(str(page), str(tmp_path / "hijack_sweep.png"))
    assert "Hijack theory fit per task" in seen["text"] and "previous-token attention per task" in seen["text"]
    assert "P(noise" not in seen["text"] and all(w > 0 for w in seen["image_widths"])


@pytest.mark.slow
@pytest.mark.xdist_group("hijack")
def test_the_hijack_page_renders_whatever_subset_of_callbacks_measured_something(hijack_sweep, tmp_path):
    from tests.reports.nothing_measured import variants

    row = next(r for r in table.rows(hijack_sweep) if r["task"] == 0)
    labels = []
    for label, copy in variants(row["run_dir"], tmp_path):
        page = build.report(copy)
        assert page.is_file() and "<h1>" in page.read_text(), label
        labels.append(label)
    assert labels == ["attention_probe measured nothing", "memory_probe measured nothing", "hijack_probe measured nothing",
                      "singular_attribution measured nothing", "hijack_probe built no prompt",
                      "no callback measured anything, no metric logged"]


@pytest.mark.parametrize("kind", ["gsm8k", "pretrained_prompts", "noisy_recall", "knowledge_hijack"])
def test_a_page_renders_for_a_run_that_recorded_only_its_status(tmp_path, kind):
    """A run that failed at its first step (or measured nothing at all) still has a page, saying so."""
    import json

    (tmp_path / "summary.json").write_text(json.dumps({"schema": 3, "kinds": [kind], "status": "failed", "global_step": 0,
                                                       "error": "RuntimeError: boom", "results": None, "callbacks": {},
                                                       "variants": {}, "metrics": {}}))
    (tmp_path / "metrics.csv").write_text("step\n")
    page = build.report(tmp_path)
    assert "Error: RuntimeError: boom" in page.read_text()
