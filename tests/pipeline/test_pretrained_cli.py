"""`main.py test --config configs/pythia_{ioi,facts}.yaml` end to end on tiny local models of three architectures."""
import json

import pytest

from main import main
from tests.pipeline.test_cli import only_run_dir

LASER = '{"late_mlp_out": [{"matrix": "mlp_out", "rho": 0.5, "layers": 1}], "all_mlp_in": [{"matrix": "mlp_in", "rho": 0.0}]}'


def run_test(config: str, model_dir: str, root, *extra: str) -> dict:
    # the model alone is overridden: the data's tokenizer follows it (the config's hub id is never loaded)
    main(["test", "--config", config, "--model.init_args.model_name", model_dir,
          "--model.init_args.laser", LASER, "--trainer.default_root_dir", str(root), "--trainer.accelerator", "cpu",
          "--trainer.enable_progress_bar", "false", "--report", "false", *extra])
    return json.loads((only_run_dir(root) / "summary.json").read_text())


@pytest.mark.parametrize("arch", ["gpt_neox", "llama", "phi3"])
def test_ioi_through_the_cli(tiny_hf, tmp_path, arch, capsys):
    summary = run_test("configs/pythia_ioi.yaml", tiny_hf[arch], tmp_path, "--data.init_args.n_prompts", "24")
    assert summary["status"] == "completed"
    assert set(summary["variants"]) == {f"{v}{t}" for v in ("full", "late_mlp_out", "all_mlp_in") for t in ("", ":ABBA", ":BABA")}
    for row in summary["variants"].values():
        assert set(row) == {"p_answer", "p_generic", "log_ratio", "acc", "logit_diff"}
        assert 0 < row["p_answer"] < 1 and 0 < row["p_generic"] < 1
    # removing every MLP input matrix changes the predictions; the full model is the untouched checkpoint
    assert summary["variants"]["all_mlp_in"]["log_ratio"] != pytest.approx(summary["variants"]["full"]["log_ratio"])
    info = summary["model"]
    assert info["model_name"] == tiny_hf[arch] and info["revision"] is None  # a local directory has no revisions
    assert sum(info["laser_ranks"]["all_mlp_in"].values()) == 0 and len(info["laser_ranks"]["late_mlp_out"]) == 1
    out = capsys.readouterr().out
    table = out.split("Next-token probabilities after each prompt:\n")[1].split("\n\n")[0].splitlines()
    assert [row.split()[0] for row in table] == ["variant", "full", "late_mlp_out", "all_mlp_in"]  # prompt types: on the page


def test_facts_through_the_cli(tiny_hf, tmp_path):
    summary = run_test("configs/pythia_facts.yaml", tiny_hf["gpt_neox"], tmp_path, "--data.init_args.n_prompts", "40")
    assert {"full", "full:capital_of", "late_mlp_out:located_in"} <= set(summary["variants"])
    assert "logit_diff" not in summary["variants"]["full"]  # facts have no competing name


def test_a_bad_revision_or_spec_stops_before_loading(tiny_hf, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:  # the model and its linked tokenizer are hub ids: no download is tried
        main(["test", "--config", "configs/pythia_ioi.yaml", "--model.init_args.revision", "step1500",
              "--trainer.default_root_dir", str(tmp_path)])
    assert info.value.code == 2 and "'step1500' is not a Pythia checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # a prediction needs every component: refused before the model loads
        main(["test", "--config", "configs/smollm2_laser.yaml", "--model.init_args.svd", "randomized",
              "--trainer.default_root_dir", str(tmp_path)])
    assert info.value.code == 2 and "model.init_args.predict needs model.init_args.svd: exact" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # knowledge-hijack cells: checked before the model loads
        main(["test", "--config", "configs/smollm2_hijack.yaml", "--data.init_args.hijack", '{"n": [-1, 2]}',
              "--trainer.default_root_dir", str(tmp_path)])
    assert info.value.code == 2 and "data.init_args.hijack.n must be a non-empty list of integers >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_test("configs/pythia_ioi.yaml", tiny_hf["llama"], tmp_path, "--model.init_args.laser",
                 '{"x": [{"matrix": "mlp_out", "rho": 0.5, "layers": 7}]}')
    assert "layer 7 out of range for 2 layers" in capsys.readouterr().err


def test_the_selection_split_chooses_a_variant_without_the_test_prompts(tiny_hf, tmp_path, capsys):
    summary = run_test("configs/pythia_ioi.yaml", tiny_hf["llama"], tmp_path, "--data.init_args.n_prompts", "40",
                       "--data.init_args.selection_fraction", "0.25", "--model.init_args.select_by", "logit_diff")
    sel = summary["results"]["selection"]
    assert sel["by"] == "logit_diff" and set(sel["selection"]) == {"full", "late_mlp_out", "all_mlp_in"}
    # chosen on the selection split alone; the test values are reported next to it
    assert sel["selected"] == max(sel["selection"], key=sel["selection"].get)
    for v in sel["selection"]:
        assert sel["selection"][v] == pytest.approx(summary["variants"][v]["logit_diff@selection"], rel=1e-6)
        assert sel["test"][v] == pytest.approx(summary["variants"][v]["logit_diff"], rel=1e-6)
    assert f"Chosen on the selection split by logit_diff: {sel['selected']}" in capsys.readouterr().out


def test_selection_and_test_prompts_are_disjoint_and_bad_settings_are_refused(tiny_hf):
    from datamodules import PromptDataModule

    data = PromptDataModule(tokenizer=tiny_hf["llama"], n_prompts=40, selection_fraction=0.25, selection_seed=3)
    sel, test = (set(map(tuple, data.splits[s]["input_ids"])) for s in ("selection", "test"))
    assert len(data.splits["selection"]) == 10 and len(data.splits["test"]) == 30 and not sel & test
    assert data.split_names == ["selection", "test"] and len(data.test_dataloader()) == 2
    with pytest.raises(ValueError, match="selection_fraction must be in"):
        PromptDataModule(tokenizer=tiny_hf["llama"], n_prompts=40, selection_fraction=1.0)
    from lightning_modules import CausalLMModule

    with pytest.raises(ValueError, match="select_by logit_diff needs IOI prompts"):  # before the model loads
        CausalLMModule.check_before_build({"select_by": "logit_diff"}, {"task": "facts", "selection_fraction": 0.25}, {})


def test_a_prompt_set_sweep_selects_by_the_selection_split():
    from reports.table import selected

    rows = [{"task": 0, "status": "completed", "model.init_args.revision": "step1", "variant": v, "log_ratio@selection": s,
             "log_ratio": t} for v, s, t in (("full", 0.1, 0.2), ("cut", 0.5, -1.0), ("other", 0.3, 9.0))]
    protocol = {"by": "log_ratio", "variant_keys": ["model.init_args.laser"], "evaluation_keys": []}  # what the task declared
    (choice,) = selected(rows, ["model.init_args.revision"], {0: protocol})
    assert choice["selected"] == "cut" and choice["log_ratio (test)"] == -1.0 and choice["full log_ratio (test)"] == 0.2
    assert choice["evaluation"] == "prompts"


def test_prediction_and_layer_attribution_through_the_cli(tiny_hf, tmp_path, capsys):
    grid = '{"matrices": ["mlp_out", "attn_k", "mlp_in"], "layers": [1, "0-1"], "rhos": [0.1, 0.5]}'
    summary = run_test("configs/pythia_ioi.yaml", tiny_hf["gpt_neox"], tmp_path, "--data.init_args.n_prompts", "40",
                       "--data.init_args.selection_fraction", "0.5", "--model.init_args.search", grid,
                       "--model.init_args.predict", "true")
    pred = summary["results"]["prediction"]
    assert pred["split"] == "selection" and pred["n_prompts"] == 20 and len(pred["variants"]) == 2 + 12
    selection = {v: m["log_ratio@selection"] for v, m in summary["variants"].items() if ":" not in v}
    assert pred["gap"] == pytest.approx(selection["full"], abs=1e-4)  # the prediction starts from the measured gap
    for variant, entry in pred["variants"].items():
        assert entry["measured"] == pytest.approx(selection[variant] - selection["full"], abs=1e-6)
        assert entry["linear"] is not None
        assert (entry["direct"] is None) == ("mlp_out" not in variant), variant  # direct: stream writers only
    assert pred["n_variants"] == {"direct": 5, "linear": 14} and -1 <= pred["spearman"]["linear"] <= 1
    assert pred["ranking"][0] == max(pred["variants"], key=lambda v: pred["variants"][v]["linear"])
    assert set(pred["seconds"]) == {"svd", "attribution", "search"} and min(pred["seconds"].values()) > 0
    effects = json.loads((only_run_dir(tmp_path) / pred["file"]).read_text())
    fused = "gpt_neox.layers.1.attention.query_key_value.weight[8:16/24]"
    assert len(effects["effects"]["linear"][fused]) == len(effects["singular_values"][fused]) == 32
    assert summary["files"][pred["file"]]["bytes"] > 0
    out = capsys.readouterr().out
    assert "Predicted from singular directions in" in out and "Spearman with the measured change" in out
    # the console, as after training: a line per batch scored (the bar is off), then a short table (the full model,
    # the named variants and the choice; the 12 grid points are on the page), the choice, the run directory, last
    lines = out.strip().splitlines()
    progress = [line for line in lines if line.startswith("scored batch ")]
    assert progress[-1].startswith("scored batch 3/3 of the test split with all 15 variants") and progress[-1].endswith("about 0 s left")
    table = lines[lines.index("Next-token probabilities after each prompt:") + 1:]
    chosen = summary["results"]["selection"]["selected"]
    rows = table[1:table.index("")]
    assert table[0].split()[0] == "variant" and sorted(r.split()[0] for r in rows) == sorted({"full", "late_mlp_out", "all_mlp_in", chosen})
    assert lines[-5].startswith(f"Chosen on the selection split by log_ratio: {chosen}") and lines[-3].startswith("Run directory: ")
    assert lines[-1].startswith("Report: ")
    assert len(lines) < 40
    # the per-layer split of the test split's gap: the parts add up to each prompt's gap, and their means to the mean
    layers = summary["results"]["layer_attribution"]
    assert layers["max_residual"] < 1e-4 and layers["n"] == {"all": 20, "ABBA": layers["n"]["ABBA"], "BABA": 20 - layers["n"]["ABBA"]}
    assert set(layers["variants"]) == {"full", "late_mlp_out", "all_mlp_in", summary["results"]["selection"]["selected"]}
    for variant, by_type in layers["variants"].items():
        parts = by_type["all"]
        assert parts["total"] == pytest.approx(summary["variants"][variant]["log_ratio"], abs=1e-5)
        assert sum(v for k, v in parts.items() if k != "total") == pytest.approx(parts["total"], abs=1e-4)
        assert set(parts) == {"embed", "bias", "total"} | {f"layers.{i}.{p}" for i in range(2) for p in ("attn", "mlp")}
    from reports import build

    run = only_run_dir(tmp_path)
    page = build.report(run).read_text()
    assert {p.stem for p in (run / "report" / "figures").glob("*.png")} == {"laser_search", "prediction", "layer_attribution",
                                                                           "prompt_types"}
    assert f"same {pred['n_prompts']} prompts of the selection split" in page


def test_knowledge_hijack_prompts_through_the_cli(tiny_hf, tmp_path, capsys):
    hijack = '{"n": [0, 1, 3], "k": [0, 1], "distance": [0, 2], "length": [null], "facts_per_cell": 6}'
    summary = run_test("configs/smollm2_hijack.yaml", tiny_hf["llama"], tmp_path, "--data.init_args.hijack", hijack,
                       "--model.init_args.laser", '{"late": [{"matrix": "mlp_out", "rho": 0.0, "layers": 1}]}')
    hj = summary["results"]["hijack"]
    assert set(hj["variants"]) == {"full", "late"}
    predictions = [json.loads(line) for line in (only_run_dir(tmp_path) / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 3 * 2 * 2 * 6
    for variant, r in hj["variants"].items():
        assert len(r["cells"]) == 12 and {(b["k"], b["distance"]) for b in r["boundaries"]} == {(0, 0), (0, 2), (1, 0), (1, 2)}
        cell = next(c for c in r["cells"] if (c["n"], c["k"], c["distance"]) == (3, 1, 2))
        rows = [p for p in predictions if p["type"] == "n3_k1_d2"]
        gaps = [p["variants"][variant]["logit_diff"] for p in rows]
        # the cell's numbers are its prompts' numbers: P(B_fake) is P(answer), the gap logit(B_fake) - logit(B)
        assert cell["prompts"] == len(rows) == 6 and cell["gap"] == pytest.approx(sum(gaps) / 6, abs=1e-6)
        assert cell["win"] == pytest.approx(sum(g > 0 for g in gaps) / 6)
        assert cell["p_fake"] == pytest.approx(sum(p["variants"][variant]["p_answer"] for p in rows) / 6, rel=1e-5)
        assert all(p["prompt"].count(p["answer"] + ".") >= 3 for p in rows)  # three counterfactual statements (at least)
        assert r["fit"] is not None and r["fit"]["n_points"] == 12
    assert "Knowledge hijack, full: k=0, distance 0: n* =" in capsys.readouterr().out
    from reports import build

    run = only_run_dir(tmp_path)
    page = build.report(run).read_text()
    # the hijack cells are drawn as the hijack figure and table, not as 12 prompt types of bars
    assert {p.stem for p in (run / "report" / "figures").glob("*.png")} == {"hijack"}
    assert "Knowledge hijack: the boundary n*" in page and page.count("<tr>") >= 1 + 2 * 4
