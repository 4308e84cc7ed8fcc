"""configs/hijack.yaml end to end (Wang & Sato's setup: zero-initialised W_K1, W_K2, W_O2 trained, a trained FF for the
global bigram), on 2 seeds: the relative position bias keeps the in-context answer beyond the training length, APE
does not, and the fitted logit-gap form explains the measured gaps."""
import json
from pathlib import Path

import pytest

from reports import table

ENCODING = "model.init_args.model.positional"


@pytest.mark.slow
@pytest.mark.xdist_group("hijack")  # with the hijack pages, which read the same runs
@pytest.mark.parametrize("seed", [0, 1])
def test_relative_bias_generalises_beyond_the_training_length_and_ape_does_not(hijack_pe_sweep, seed):
    by_task = {r["task"]: r for r in table.rows(hijack_pe_sweep["root"])}  # a row per task and variant
    rows = [r for r in by_task.values() if r.get("seed_everything") == seed]
    assert sorted(r[ENCODING] for r in rows) == ["absolute", "relative"] and all(r["status"] == "completed" for r in rows)
    summaries = {r[ENCODING]: json.loads((Path(r["run_dir"]) / "summary.json").read_text()) for r in rows}
    for task in (r["task"] for r in rows):
        out = hijack_pe_sweep["logs"][task]
        assert "Hijack theory" in out and "R2" in out  # hijack.yaml prints the fit
    relative, absolute = (summaries[pe]["variants"]["full"] for pe in ("relative", "absolute"))
    # measured (README, "Knowledge hijack"): relative 0.96 / 0.70 / 0.78 (seed 0), 0.97 / 0.73 / 0.82 (seed 1);
    # APE 0.83 / 0.32 / 0.53 (seed 0), 0.83 / 0.25 / 0.48 (seed 1) at T_train / 2 T_train beyond / 4 T_train beyond
    assert relative["acc"] >= 0.9  # the induction head at T_train
    assert absolute["acc@T128:beyond"] < 0.5  # pairs beyond T_train: APE's previous-token head has no trained positions
    for test_set in ("T128:beyond", "T256:beyond"):
        assert relative[f"acc@{test_set}"] >= absolute[f"acc@{test_set}"] + 0.15, test_set
    assert relative["acc@T256:beyond"] >= 0.7
    # the logit-gap form, fitted over n and T (late placement, full FF): R^2 0.96 / 0.95 measured for relative
    fit = summaries["relative"]["callbacks"]["hijack_probe"]["theory_fit"]["late"]["full"]
    assert fit["r2"] >= 0.85 and fit["w_ic"] > 0 and fit["w_g"] > 0
    t64 = fit["by_length"]["T64"]
    # the form's n* predicts where the mean gap turns positive
    assert t64["predicted_boundary"] is not None and abs(t64["predicted_boundary"] - (t64["gap_boundary"] or 99)) <= 2
    # the measured boundary (o wins on half the prompts) is HijackProbe's own
    probe = summaries["relative"]["callbacks"]["hijack_probe"]["results"]["late"]["T64"]["full"]
    assert t64["measured_boundary"] == probe["boundary"]
