"""Pages of pretrained-model runs (a Pythia-style prompt set on a tiny GPT-NeoX, GSM8K on a tiny Llama): each shows
only its own figures, with no toy-model notes, and opens in a real browser; the revision sweep's figure is drawn
against the checkpoint's training step."""
import json

import matplotlib.pyplot as plt

from reports import build
from reports.kinds import SweepRecord, pretrained_prompts
from reports.page import Page
from reports.run import load_run
from tests.pipeline.test_cli import only_run_dir
from tests.pipeline.test_pretrained_cli import run_test
from tests.reports.browser import open_page

TOY_NOTES = ("evaluated no LASER variant", "logged no validation metrics", "AttentionProbe was off", "WeightSpectrumLogger was off",
             "GradientNoise was off", "P(noise")  # the toy model's notes, false or beside the point on these pages


def test_a_pretrained_run_page_shows_its_prompts_and_no_toy_notes(tiny_hf, tmp_path, monkeypatch, chromium):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    summary = run_test("configs/pythia_ioi.yaml", tiny_hf["gpt_neox"], tmp_path, "--data.init_args.n_prompts", "24")
    assert summary["kinds"] == ["pretrained_prompts"]
    run = only_run_dir(tmp_path)
    page = build.report(run)
    bars = pretrained_prompts.prompt_type_bars(summary, "p_answer")
    assert set(bars) == {"full", "late_mlp_out", "all_mlp_in"} and set(bars["full"]) == {"ABBA", "BABA"}
    assert bars["full"]["ABBA"] == summary["variants"]["full:ABBA"]["p_answer"]
    assert {p.stem for p in (run / "report" / "figures").glob("*.png")} == {"prompt_types", "layer_attribution"}
    seen = open_page(str(page), str(tmp_path / "pythia.png"))
    text = seen["text"].split("\nConfig")[0]
    assert "Next-token probabilities after each prompt" in text and not [n for n in TOY_NOTES if n in text]
    # an evaluation of a local model: no training steps, no revision, the model named by what was loaded
    assert "(a pretrained model, evaluated only)" in text and "at step" not in text and "steps 0" not in text
    assert "revision" not in text.split("Run ")[1].split(".")[0] and f"model {tiny_hf['gpt_neox']}" in text
    assert all(u.startswith(("file://", "data:")) for u in seen["requests"]) and all(w > 0 for w in seen["image_widths"])
    # examples beside the means: test prompts with both models' top tokens, as predictions.jsonl has them
    rows = pretrained_prompts.example_prompts(load_run(run), "all_mlp_in")
    records = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    first = next(r for r in records if r["split"] == "test" and r["prompt"].endswith(rows[0]["prompt"].lstrip("…")))
    top = first["variants"]["full"]["top"]
    assert len(rows) == 6 and len(top) == 3 and top[0][0] == first["variants"]["full"]["argmax"]
    assert top[0][1] >= top[1][1] >= top[2][1] and rows[0]["full model: top 3"].startswith(f"{top[0][0]!r} {top[0][1]:.3g}")
    changes = [abs(r["variants"]["all_mlp_in"]["log_ratio"] - r["variants"]["full"]["log_ratio"]) for r in records
               if r["split"] == "test" and r["variants"]["full"]["argmax"] == r["variants"]["all_mlp_in"]["argmax"]]
    assert "Examples: the full model against all_mlp_in" in text and len(changes) >= 6  # ranked by the change
    # the means' intervals over the test prompts, the same bootstrap by hand
    import numpy as np

    cis, n = pretrained_prompts.prompt_intervals(load_run(run))
    tests = [r for r in records if r["split"] == "test"]
    values = np.array([r["variants"]["full"]["log_ratio"] for r in tests])
    means = values[np.random.default_rng(0).integers(0, n, size=(2000, n))].mean(1)
    assert n == len(tests) and cis["full"]["log_ratio"] == [np.quantile(means, 0.025), np.quantile(means, 0.975)]
    assert cis["full"]["log_ratio"][0] < summary["variants"]["full"]["log_ratio"] < cis["full"]["log_ratio"][1]
    assert "log_ratio 95% CI" in text and f"Means over the {n} test prompts" in text


def test_gsm8k_examples_pair_the_generations_where_the_answers_differ(tmp_path):
    from reports.kinds import gsm8k
    from reports.run import RunRecord

    def gen(variant, doc, text, right):
        return {"variant": variant, "split": "test", "num_fewshot": 1, "doc_id": doc, "question": f"q{doc}", "target": "4",
                "generation": text, "correct_flexible": right}

    records = [gen("full", 0, "2 + 2 = 4", True), gen("cut", 0, "2 + 2 = 5", False),
               gen("full", 1, "so 4", True), gen("cut", 1, "so 4", True),
               gen("full", 2, "it is 3", False), gen("cut", 2, "it is 4", True)]
    (tmp_path / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    run = RunRecord(tmp_path, {"results": {"gsm8k": {"generations": "generations.jsonl", "selected": {}}}}, {}, {})
    rows = gsm8k.generation_examples(run)
    assert [(r["question"], r["full model"], r["cut"]) for r in rows] == [
        ("q0", "2 + 2 = 4 [right]", "2 + 2 = 5 [wrong]"), ("q2", "it is 3 [wrong]", "it is 4 [right]")]


def test_a_revision_sweep_is_drawn_against_the_training_step(tmp_path):
    rows = [{"task": i, "status": "completed", "model.init_args.revision": rev, "variant": v, "p_answer": p, "p_generic": 0.1,
             "log_ratio": 0.5, "logit_diff": 1.0}
            for i, (rev, p) in enumerate([("step0", 0.01), ("step1000", 0.2), ("step143000", 0.6)]) for v in ("full", "cut")]
    assert [pretrained_prompts.revision_step(r) for r in ("step0", "step512", "main", "v1")] == [0, 512, 143000, None]
    sweep = SweepRecord(tmp_path, rows, [{"model.init_args.revision": r["model.init_args.revision"]} for r in rows[::2]],
                        ["model.init_args.revision"], ["model.init_args.revision"], {})
    page = Page("t", tmp_path)
    pretrained_prompts.sweep_page(page, sweep)
    (fig,) = page.figures
    assert fig.name == "revisions" and plt.imread(fig.png).std() > 0.01
    assert not [b for kind, b in page.blocks if kind == "section" and "same weights" in b[0]]


def test_a_revision_sweep_draws_each_layers_share_by_checkpoint(tmp_path):
    from reports.run import RunRecord

    revisions = ["step0", "step1000", "step143000"]
    def shares(k):  # layer 1's MLP turns toward " the" as training goes on
        parts = {"embed": 0.1, "bias": 0.0, "layers.0.attn": 0.2 * k, "layers.0.mlp": 0.05, "layers.1.attn": 0.5 * k,
                 "layers.1.mlp": -0.4 * k}
        return {"all": parts | {"total": sum(parts.values())}}
    runs = {i: RunRecord(tmp_path / str(i), {"results": {"layer_attribution": {"variants": {"full": shares(i)}}}}, {}, None)
            for i in range(3)}
    rows = [{"task": i, "status": "completed", "model.init_args.revision": r, "variant": "full", "p_answer": 0.1,
             "p_generic": 0.1, "log_ratio": 0.5, "logit_diff": 1.0} for i, r in enumerate(revisions)]
    sweep = SweepRecord(tmp_path, rows, [{"model.init_args.revision": r} for r in revisions], ["model.init_args.revision"],
                        ["model.init_args.revision"], runs)
    page = Page("t", tmp_path)
    pretrained_prompts.sweep_page(page, sweep)
    fig = next(f for f in page.figures if f.name == "layers_by_checkpoint")
    image = plt.imread(fig.png)
    assert image.std() > 0.01 and "averaged over the runs of each checkpoint (1)" in fig.caption


def test_revisions_that_served_one_checkpoints_weights_are_flagged(tmp_path):
    from reports.table import flag_same_weights

    asked = [("step1000", "aaaa"), ("step2000", "bbbb"), ("step3000", "aaaa"), ("step3000", "aaaa")]
    rows = [{"task": i, "status": "completed", "model.init_args.revision": rev, "fingerprint": f, "variant": "full",
             "p_answer": 0.1 * i, "p_generic": 0.1, "log_ratio": 0.5, "logit_diff": 1.0} for i, (rev, f) in enumerate(asked)]
    rows.append({"task": 4, "status": "failed", "model.init_args.revision": "step4000"})
    flag_same_weights(rows)
    # task 3 repeats task 2's checkpoint (a second seed, say): the same weights are expected there
    assert rows[0]["same_weights_as"] == "task 2 (revision step3000); task 3 (revision step3000)"
    assert rows[2]["same_weights_as"] == rows[3]["same_weights_as"] == "task 0 (revision step1000)"
    assert "same_weights_as" not in rows[1] and "same_weights_as" not in rows[4]
    sweep = SweepRecord(tmp_path, rows, [{"model.init_args.revision": r["model.init_args.revision"]} for r in rows],
                        ["model.init_args.revision"], ["model.init_args.revision"], {})
    page = Page("t", tmp_path)
    pretrained_prompts.sweep_page(page, sweep)
    warning = [b[1] for kind, b in page.blocks if kind == "section" and b[0].startswith("Warning: checkpoints with the same")]
    assert len(warning) == 1 and warning[0].count("<tr>") == 4 and "step1000" in warning[0]


def test_the_wandb_report_of_a_pythia_run_plots_its_test_metrics(tiny_hf, tmp_path, monkeypatch):
    from reports import wandb_report
    from reports.__main__ import main as reports_main

    monkeypatch.setenv("WANDB_MODE", "offline")
    summary = run_test("configs/pythia_ioi.yaml", tiny_hf["gpt_neox"], tmp_path, "--data.init_args.n_prompts", "24")
    run = only_run_dir(tmp_path)
    reports_main([str(run), "--entity", "my-team"])
    spec, _ = wandb_report.load(run / "report" / wandb_report.SPEC_FILE)
    titles = {p["title"]: p["y"] for p in spec["panels"]}
    assert set(titles["logit_diff per variant"]) == {f"test/{v}/logit_diff" for v in ("full", "late_mlp_out", "all_mlp_in")}
    assert {k for p in spec["panels"] for k in p["y"]} <= set(summary["metrics"])


def test_a_gsm8k_run_page_shows_exact_match_by_shots(tiny_hf, tmp_path, monkeypatch, chromium):
    from tests.lightning_modules.test_gsm8k import TEST, TRAIN, run

    data = tmp_path / "gsm8k"
    data.mkdir()
    for name, recs in (("train", TRAIN), ("test", TEST)):
        (data / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    laser = '{"out_L1@0.1": [{"matrix": "mlp_out", "layers": 1, "rho": 0.1}]}'
    run_dir = run(tiny_hf["llama"], data, tmp_path / "runs", "--model.init_args.laser", laser, "--data.init_args.num_fewshot", "[0, 1]")
    page = build.report(run_dir)
    assert {p.stem for p in (run_dir / "report" / "figures").glob("*.png")} == {"gsm8k"}
    seen = open_page(str(page), str(tmp_path / "gsm8k.png"))
    text = seen["text"].split("\nConfig")[0]
    assert "GSM8K exact match (lm-evaluation-harness gsm8k_cot)" in text and not [n for n in TOY_NOTES if n in text]
    assert all(w > 0 for w in seen["image_widths"])
