"""The house's layering: what runs (lightning_modules/, datamodules/, callbacks/) never imports the drivers
(pipeline/) or the readers (reports/); the run record (run_record/) imports none of them."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RULES = {
    "lightning_modules": {"pipeline", "reports", "callbacks"},
    "datamodules": {"pipeline", "reports", "callbacks"},
    "callbacks": {"pipeline", "reports"},
    "run_record": {"pipeline", "reports", "callbacks", "lightning_modules", "datamodules"},
    "reports": {"pipeline", "callbacks"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("package", sorted(RULES))
def test_no_module_imports_upwards(package):
    wrong = {str(p.relative_to(REPO)): sorted(imported_packages(p) & RULES[package]) for p in (REPO / package).rglob("*.py")}
    assert not {k: v for k, v in wrong.items() if v}, wrong


def test_the_checker_sees_an_upward_import(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("import os\nfrom pipeline import network\n")
    assert "pipeline" in imported_packages(bad)
