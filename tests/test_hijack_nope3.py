"""configs/hijack_nope3.yaml, briefly: three layers without positions parse and run; the hijack probe reads the
previous-token profile of the layer it is told, the page names that layer, the memory probes cover all three layers,
and asking for the constructed model where the theory has none (no positions) records why instead of failing."""
import json

import pytest

from main import main
from reports import build
from tests.pipeline.test_cli import only_run_dir

CALLBACKS = """
trainer:
  callbacks:
    - class_path: callbacks.MemoryProbe
      init_args: {every_n_steps: 10}
    - class_path: callbacks.HijackProbe
      init_args: {n_pairs: [0, 2], length_factors: [1, 2], placements: [late], ff_target: layers.2.ff.w2, ff_rhos: [1.0],
                  prev_token_layer: 1, constructed: true, n_global: [1], n_prompts: 16}
"""


def test_three_layers_without_positions_run_and_name_their_previous_token_layer(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    (tmp_path / "callbacks.yaml").write_text(CALLBACKS)
    main(["fit", "--config", "configs/hijack_nope3.yaml", "--config", str(tmp_path / "callbacks.yaml"),
          "--trainer.max_steps", "20", "--trainer.val_check_interval", "20", "--trainer.enable_progress_bar", "false",
          "--data.init_args.n_test", "16", "--data.init_args.test_lengths", "[64]", "--model.init_args.laser_rhos", "[1.0]",
          "--trainer.default_root_dir", str(tmp_path / "runs"), "--report", "false"])
    run = only_run_dir(tmp_path / "runs")
    summary = json.loads((run / "summary.json").read_text())
    hijack, memories = summary["callbacks"]["hijack_probe"], summary["callbacks"]["memory_probe"]
    assert hijack["prev_token_layer"] == 1 and "positions" in hijack["constructed_skipped"]
    assert "constructed" not in hijack["ff_variants"] and set(hijack["results"]["late"]["T64"]) == {"full"}
    assert set(hijack["results"]["late"]["T64"]["full"]["by_k"]) == {"1"}  # k = 1 pair (q, b) beside n = 0, 2
    assert memories["calls"] == 3 and {f"memory/layers.{i}.attn.wk/positional_inside" for i in range(3)} <= set(memories)
    assert "memory/layers.2.ff/global_top1" in memories and "memory/layers.1.ff/global_top1" not in memories
    # without positions the positional memory has nothing to read: every query ties, chance exactly
    assert memories["memory/layers.0.attn.wk/positional_inside"] == pytest.approx(sum(1 / (t + 1) for t in range(1, 64)) / 63)
    page = build.report(run).read_text()
    assert "Previous-token attention of Layer 2 (layers.1), inside and beyond the training length" in page


def test_the_constructed_model_answers_the_runs_prompts_and_test_sets_beside_the_trained_one(tmp_path, monkeypatch):
    """configs/hijack.yaml (relative bias), briefly: the model built from the theory is recorded as the variant
    ``constructed`` on the hijack prompts (with k pairs (q, b) too) and on every clean test set, and drawn beside the
    trained model."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    (tmp_path / "callbacks.yaml").write_text(CALLBACKS.replace("ff_target: layers.2.ff.w2", "ff_target: layers.1.ff.w2")
                                             .replace("prev_token_layer: 1", "prev_token_layer: 0"))
    main(["fit", "--config", "configs/hijack.yaml", "--config", str(tmp_path / "callbacks.yaml"),
          "--trainer.max_steps", "20", "--trainer.val_check_interval", "20", "--trainer.enable_progress_bar", "false",
          "--data.init_args.n_test", "16", "--data.init_args.test_lengths", "[64, 128]", "--model.init_args.laser_rhos", "[1.0]",
          "--trainer.default_root_dir", str(tmp_path / "runs"), "--report", "false"])
    run = only_run_dir(tmp_path / "runs")
    hijack = json.loads((run / "summary.json").read_text())["callbacks"]["hijack_probe"]
    assert hijack["constructed_skipped"] is None and hijack["ff_variants"]["constructed"]["scales"]["output"] == 8.0
    built = hijack["results"]["late"]["T64"]["constructed"]
    assert set(built["by_n"]) == {"0", "2"} and set(built["by_k"]) == {"1"}
    assert built["by_n"]["2"]["attn_after_q"] > 0.5  # its induction head finds the pairs from the first step
    assert set(hijack["constructed_test_sets"]) == {"main", "T64:anywhere", "T128:anywhere", "T128:beyond"}
    assert all(0 <= m["acc"] <= 1 for m in hijack["constructed_test_sets"].values())
    # the page draws it under its own label (the page itself is rendered by tests/reports on the hijack fixture)
    from reports.kinds import knowledge_hijack
    from reports.style import VariantEncoding

    summary = {"callbacks": {"hijack_probe": hijack}}
    assert "constructed" in knowledge_hijack.win_rates(summary)["late T64"]
    assert VariantEncoding.of([summary]).style("constructed")["label"] == "constructed from the theory (untrained)"
