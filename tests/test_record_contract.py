"""The run record's contract (run_record/contract.py): every shipped contributor declares its base, overrides only
declared hooks (a misspelt hook fails here, not as an empty figure), and claims its own summary section; metric
classes compute exactly the declared metric names; Lightning's private API is used in one module only."""
import ast
import difflib
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import Logger

from run_record import contract, names
from run_record.contract import RecordedCallback, RecordedData, RecordedModule, RecordWriter

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("lightning_modules", "datamodules", "callbacks", "pipeline", "run_record")
LIGHTNING = {L.LightningModule: RecordedModule, L.LightningDataModule: RecordedData, L.Callback: RecordedCallback,
             Logger: RecordWriter}


def shipped_classes() -> list[type]:
    out = []
    for package in PACKAGES:
        for info in pkgutil.iter_modules([str(REPO / package)]):
            module = importlib.import_module(f"{package}.{info.name}")
            out += [c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == module.__name__]
    return out


def contributors() -> list[tuple[type, type]]:
    """(class, the contract base it must have) for every shipped Lightning module, datamodule, callback and logger."""
    out = []
    for cls in shipped_classes():
        for lightning_base, base in LIGHTNING.items():
            if issubclass(cls, lightning_base) and cls.__module__ != "run_record.lightning_private":
                out.append((cls, base))
    return out


def test_every_shipped_contributor_is_found():
    found = {c.__name__ for c, _ in contributors()}
    assert {"NoisyRecallModule", "CausalLMModule", "GSM8KModule", "NoisyRecallDataModule", "PromptDataModule",
            "GSM8KDataModule", "HijackProbe", "LaserTruncation", "AttentionProbe", "GradientNoise",
            "WeightSpectrumLogger", "RunSummary", "SlurmRequeue", "RunHistory"} <= found


@pytest.mark.parametrize("cls,base", contributors(), ids=lambda x: getattr(x, "__name__", str(x)))
def test_contributor_declares_its_base(cls, base):
    assert issubclass(cls, base), f"{cls.__module__}.{cls.__name__} writes into the run record without {base.__name__}"


def misspelt_hooks(cls: type, base: type) -> list[str]:
    """Public names a class defines that are not declared hooks nor Lightning's, but look like a declared hook."""
    hooks = contract.declared(base)
    lightning = {n for b in LIGHTNING for n in dir(b)} | {n for n in dir(L.LightningModule)}
    wrong = []
    for name in vars(cls):
        if name.startswith("_") or name in hooks or name in lightning:
            continue
        close = difflib.get_close_matches(name, sorted(hooks), n=1, cutoff=0.8)
        if close:
            wrong.append(f"{cls.__name__}.{name} (did you mean {close[0]}?)")
    return wrong


@pytest.mark.parametrize("cls,base", contributors(), ids=lambda x: getattr(x, "__name__", str(x)))
def test_no_misspelt_hook(cls, base):
    assert not misspelt_hooks(cls, base)


def test_the_contract_test_catches_a_misspelt_hook():
    class Sloppy(RecordedCallback, L.Callback):
        record_name = contract.HIJACK_PROBE

        def sumary(self):  # the summary hook, misspelt: RunSummary would never call it
            return {"x": 1}

        def record_kind(self):
            return ["toy"]

    assert len(misspelt_hooks(Sloppy, RecordedCallback)) == 2


def test_sections_are_declared_and_unique():
    named = [c for c, _ in contributors() if issubclass(c, RecordedCallback) and c.record_name]
    sections = [c.record_name for c in named]
    assert sorted(sections) == sorted(contract.SECTIONS), "each declared section has exactly one shipped writer"
    for cls in named:  # a section's writer gives its summary
        assert "summary" in vars(cls), f"{cls.__name__} declares section {cls.record_name} but writes no summary()"


def test_a_legacy_summary_is_read_by_section_name():
    old = {"schema": 2, "callbacks": {"HijackProbe": {"a": 1}, "LaserTruncation": {"events": [1]},
                                      "LaserTruncation#2": {"events": [2]}}}
    assert contract.section(old, contract.HIJACK_PROBE) == {"a": 1}
    assert [s["events"] for s in contract.sections(old, contract.LASER_TRUNCATION)] == [[1], [2]]
    assert contract.section(old, contract.GRADIENT_NOISE) == {}


def test_recall_metric_keys_are_the_declared_names():
    from lightning_modules.metrics import TriggerRecallMetrics

    m = TriggerRecallMetrics(noise_id=3, global_answer=torch.arange(5))
    logits, targets = torch.randn(2, 4, 5), torch.randint(0, 5, (2, 4))
    m.update(logits, targets, targets, torch.ones(2, 4, dtype=torch.bool), inputs=targets)
    assert set(m.compute()) == set(names.RECALL_METRICS) | {names.GLOBAL_METRIC}
    assert set(m.compute()) <= set(names.METRICS)


def test_prompt_metric_keys_are_the_declared_names():
    from lightning_modules.prompt_metrics import AnswerVsGenericMetrics

    m = AnswerVsGenericMetrics(["ABBA"])
    m.update(torch.randn(3, 7), torch.tensor([1, 2, 3]), torch.tensor([0, 0, 0]), torch.tensor([4, -1, 5]),
             torch.tensor([0, 0, 0]))
    out = m.compute()
    assert set(out["all"]) == set(names.PROMPT_METRICS) and set(out["all"]) <= set(names.METRICS)


def test_every_plotted_or_tabled_metric_has_one_record():
    for group in (names.RECALL_METRICS, names.PROMPT_METRICS, names.GSM8K_METRICS, names.HIJACK_METRICS, names.TABLE_ORDER):
        assert set(group) <= set(names.METRICS), set(group) - set(names.METRICS)
    from reports.style import METRIC_LABELS

    assert METRIC_LABELS == {n: m.label for n, m in names.METRICS.items()}


PRIVATE = re.compile(r"\.(_(?!_)[a-z][a-z_]*)\b")
# the project's own private helpers (self._x, module-level _x) are not Lightning's: only attribute access on
# Lightning objects counts, which these names are
LIGHTNING_PRIVATE = {"_get", "_parse_ckpt_path", "_run_subcommand", "_experiment", "_trainer", "_should_accumulate",
                     "_num_ready_batches_reached", "_checkpoint_connector", "_logger_connector", "_results",
                     "_accelerator_connector", "_data_connector", "_fit_loop", "_evaluation_loop", "_active_loop",
                     "_actions", "_lightning_module"}


def private_uses(path: Path) -> list[str]:
    out = []
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in LIGHTNING_PRIVATE:
            out.append(f"{path.relative_to(REPO)}:{node.lineno} .{node.attr}")
        elif isinstance(node, ast.FunctionDef) and node.name in LIGHTNING_PRIVATE:
            out.append(f"{path.relative_to(REPO)}:{node.lineno} def {node.name}")
        elif isinstance(node, ast.Constant) and node.value in LIGHTNING_PRIVATE:
            out.append(f"{path.relative_to(REPO)}:{node.lineno} {node.value!r}")
    return out


def test_lightning_private_api_lives_in_one_module():
    adapter = REPO / "run_record" / "lightning_private.py"
    elsewhere = [u for p in REPO.glob("*/**/*.py") if ".venv" not in p.parts and p != adapter
                 and p.parent.name != "tests" and "tests" not in p.relative_to(REPO).parts for u in private_uses(p)]
    assert not elsewhere, elsewhere
    from run_record import lightning_private

    assert len(lightning_private.PRIVATE_NAMES) <= 8


def test_lightning_is_pinned_to_a_tested_range():
    text = (REPO / "pyproject.toml").read_text()
    spec = re.search(r'"lightning(>=[^"]+)"', text)
    assert spec and "<" in spec.group(1), "lightning needs an upper bound in pyproject.toml"
