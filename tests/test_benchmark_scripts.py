"""The benchmark scripts run here on CPU (their GPU figures come from benchmarks/gpu.sh on a GPU machine): the
precision fidelity check compares settings against fp32 and writes its verdicts."""
import json

from tests.pipeline.test_cli import TINY


def test_the_precision_check_compares_each_setting_with_fp32_and_writes_a_verdict(tmp_path, monkeypatch):
    import sys

    sys.path.insert(0, "benchmarks")
    import precision

    out = tmp_path / "precision.json"
    tiny = [a for a in TINY if a != "configs/noisy.yaml" and a != "--config"] + ["--trainer.max_steps", "12",
                                                                              "--trainer.val_check_interval", "6"]
    report = precision.main(["--config", "small", "--settings", "fp32", "bf16-mixed", "--seeds", "0", "1",
                             "--out", str(out), "--extra", *tiny])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    fp32 = [r for r in report["results"] if r["setting"] == "fp32"]
    assert len(fp32) == 2 and all(0 <= r["p_noise"] <= 1 and r["step_seconds"] > 0 for r in fp32)
    verdict = report["verdicts"]["bf16-mixed"]
    assert verdict["pass"] in (True, False) and set(verdict["checks"]) == set(precision.QUANTITIES)
    band = verdict["checks"]["p_noise"]["band"]
    assert band[0] <= min(verdict["checks"]["p_noise"]["fp32"]) <= max(verdict["checks"]["p_noise"]["fp32"]) <= band[1]
