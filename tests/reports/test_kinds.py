"""A new experiment kind touches no shared file: a callback declares it in the run record, a report kind registered
here (not in reports/) draws its run and sweep pages, and the W&B spec takes its panels."""
import json

import lightning as L
import pytest
import yaml

from callbacks.common import log_scalars
from reports import build, kinds, wandb_report
from run_record.contract import RecordedCallback
from reports.kinds import ReportKind
from reports.style import plt
from tests.pipeline.test_cli import TINY, only_run_dir
from tests.pipeline.test_sweep import TINY_GRID


class ToyMeasurement(RecordedCallback, L.Callback):
    """A new measurement: it declares its own kind and writes its own summary section."""

    record_name = "toy_measurement"

    def record_kinds(self):
        return ["toy"]

    def on_train_end(self, trainer, pl_module):
        log_scalars(trainer, {"toy/answer": 42.0})

    def summary(self):
        return {"answer": 42}


def toy_run_page(page, run):
    page.table("The toy result", [{"answer": run.summary["callbacks"]["toy_measurement"]["answer"]}])
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar(["answer"], [run.summary["callbacks"]["toy_measurement"]["answer"]])
    page.save(fig, "toy", "The toy figure", "Drawn by a kind registered in a test.")


def toy_sweep_page(page, sweep):
    page.table("Toy answers per task", [{"task": t, "answer": r.summary["callbacks"]["toy_measurement"]["answer"]}
                                        for t, r in sweep.runs.items()])


@pytest.fixture
def toy_kind():
    kind = kinds.register(ReportKind("toy", "A toy experiment", toy_run_page, toy_sweep_page,
                                     run_panels=lambda run: [{"kind": "line", "title": "toy", "y": ["toy/answer"]}]))
    yield kind
    kinds.REGISTRY.pop("toy")


CALLBACK = [{"class_path": "tests.reports.test_kinds.ToyMeasurement"}]


def test_a_kind_registered_in_a_test_renders_its_run_and_sweep_pages(tmp_path, monkeypatch, toy_kind):
    from main import main
    from pipeline import sweep

    monkeypatch.setenv("WANDB_MODE", "offline")
    main(["fit", *TINY, "--trainer.callbacks", json.dumps(CALLBACK), "--trainer.default_root_dir", str(tmp_path / "runs")])
    run = only_run_dir(tmp_path / "runs")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["kinds"] == ["noisy_recall", "toy"]  # the data's kind, then the callback's
    page = build.report(run).read_text()
    assert "The toy result" in page and "<td>42</td>" in page and 'id="toy"' in page
    assert "Clean-test metrics over training" in page  # the run's other kind is drawn too
    record = build.load(run)
    assert {"kind": "line", "title": "toy", "y": ["toy/answer"]} in wandb_report.panels_for_run(record)

    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump({"base": "configs/noisy.yaml", "grid": TINY_GRID | {
        "trainer.callbacks": [CALLBACK], "seed_everything": [0, 1]}}))
    sweep.main([str(path), "--root", str(tmp_path / "sweep")])
    html = build.report(tmp_path / "sweep").read_text()
    assert "Toy answers per task" in html and html.count("<td>42</td>") == 2


def test_a_kind_with_no_report_module_is_named_not_guessed(tmp_path, monkeypatch):
    from main import main

    monkeypatch.setenv("WANDB_MODE", "disabled")
    main(["fit", *TINY, "--trainer.callbacks", json.dumps(CALLBACK), "--trainer.default_root_dir", str(tmp_path)])
    page = build.report(only_run_dir(tmp_path)).read_text()  # "toy" is not registered here
    assert "kind &#x27;toy&#x27;: no report module is registered for it" in page
