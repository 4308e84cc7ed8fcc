"""Every file of a run and of a sweep truncated in turn, for each reader (collect, run report, sweep report): the
reader names the damaged file and goes on with the rest; nothing damaged is read as a result."""
import shutil

import pytest
import yaml

from pipeline import sweep
from reports import build, table
from reports.__main__ import main as reports_main
from tests.pipeline.test_sweep import TINY_GRID

RUN_FILES = ["summary.json", "config.yaml", "metrics.csv", "spectra.npz"]
SPECTRA = [{"class_path": "callbacks.WeightSpectrumLogger", "init_args": {"every_n_steps": 1}}]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A 2-task sweep whose runs wrote every kind of run file."""
    root = tmp_path_factory.mktemp("damage")
    path = root / "two.yaml"
    grid = TINY_GRID | {"trainer.callbacks": [SPECTRA], "data.init_args.alpha": [0.2, 0.8]}
    path.write_text(yaml.safe_dump({"base": "configs/noisy.yaml", "grid": grid}))
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "disabled")
    sweep.main([str(path), "--root", str(root / "sweep")])
    mp.undo()
    return root / "sweep"


@pytest.fixture
def damaged_copy(pristine, tmp_path):
    def make(relative: str):
        root = tmp_path / "sweep"
        shutil.copytree(pristine, root)  # a copy: the readers go by where the files are now
        (run,) = [p.parent for p in (root / "0").glob("*/*/summary.json")]
        target = run / relative if relative in RUN_FILES else root / relative
        data = target.read_bytes()
        target.write_bytes(data[: len(data) // 2])  # truncated mid-file
        return root, run, target
    return make


def test_the_pristine_sweep_reads_whole(pristine):
    read = table.read_sweep(pristine)
    assert not read.damaged and {r["status"] for r in read.rows} == {"completed"}


@pytest.mark.parametrize("name", RUN_FILES)
def test_the_run_report_names_a_damaged_file_and_draws_nothing_from_it(damaged_copy, name, capsys):
    root, run, target = damaged_copy(name)
    if name == "summary.json":
        with pytest.raises(SystemExit, match=rf"^error: {target} is damaged \(not valid JSON"):
            reports_main([str(run)])
        return
    reports_main([str(run)])
    page = (run / "report" / "index.html").read_text()
    assert f"{name} was not read" in page or f"{name} (" in page  # named, with why
    figures = {p.stem for p in (run / "report" / "figures").glob("*.png")}
    if name == "metrics.csv":
        assert "metrics_over_training" not in figures
        # the figure says why it is missing: the file was skipped, not that the run logged nothing
        assert "Clean-test metrics over training: not drawn, metrics.csv was not read (" in page
        assert "the run logged no validation metrics" not in page
    if name == "spectra.npz":
        assert "spectra" not in figures
    assert "laser_sweep" in figures  # the rest of the run is still reported (from summary.json)


@pytest.mark.parametrize("name", [*RUN_FILES, "0/attempt.json", "tasks.json"])
def test_collect_and_the_sweep_report_list_a_damaged_file_and_report_the_rest(damaged_copy, name, capsys):
    root, run, target = damaged_copy(name)
    rows = table.main([str(root)])
    out = capsys.readouterr().out
    if name not in ("config.yaml", "metrics.csv", "spectra.npz"):  # collect reads summaries and the sweep's own files
        assert f"not read (damaged): {target}" in out
    task1 = [r for r in rows if r["task"] == 1]
    assert {r["status"] for r in task1} == {"completed"} and len(task1) == 4  # the other task, whole (4 variants)
    task0 = [r for r in rows if r["task"] == 0]
    if name in ("summary.json", "0/attempt.json"):
        # a damaged newest attempt.json: which attempt is the newest is unknown, so no run stands for the task
        assert [(r["status"], r.get("variant")) for r in task0] == [("damaged", None)] and "p_noise" not in task0[0]
    else:
        assert {r["status"] for r in task0} == {"completed"}
    page = build.report(root).read_text()
    assert "Files not read (damaged)" in page and str(target) in page
