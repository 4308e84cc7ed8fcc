"""One module per experiment kind, behind one registry: each kind gives its run page, its sweep page and its W&B
report panels. A run's summary.json declares its kinds (run_record/kinds.py); the report builders loop over them.

A new kind is a new module that calls ``register``; no shared file changes (as a new lm-evaluation-harness task is a
new folder). ``register`` also takes kinds defined anywhere else, e.g. in a test.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from reports.run import RunRecord


@dataclass
class SweepRecord:
    """A sweep as the report builders read it: the table, the grid, each task's run, what could not be read."""

    root: Path
    rows: list[dict]  # one per (task, variant) (reports/table.py)
    points: list[dict]
    keys: list[str]  # the grid keys that vary
    swept: list[str]  # the same without the seed keys
    runs: dict[int, RunRecord]  # task -> its run (the readable ones)
    damaged: list[dict] = field(default_factory=list)
    protocols: dict[int, dict] = field(default_factory=dict)  # task -> its declared selection protocol
    overrides: dict = field(default_factory=dict)  # the sweep file's fixed settings (not grid keys)

    def point(self, task: int) -> dict:
        return self.points[task] if 0 <= task < len(self.points) else {}


def _none(*_) -> list:
    return []


@dataclass
class ReportKind:
    """``run_page(page, run)`` and ``sweep_page(page, sweep)`` add sections and figures in reading order;
    ``run_panels(run)`` / ``sweep_panels(sweep)`` return W&B report panels ({kind: line | bar, title, y, groupby})."""

    name: str
    title: str
    run_page: Callable = _none
    sweep_page: Callable = _none
    run_panels: Callable = _none
    sweep_panels: Callable = _none


REGISTRY: dict[str, ReportKind] = {}


def register(kind: ReportKind) -> ReportKind:
    REGISTRY[kind.name] = kind
    return kind


def declared(summaries: list[dict]) -> tuple[list[ReportKind], list[str]]:
    """The registered kinds the summaries declare (first-seen order), and the declared names with no report module."""
    names = list(dict.fromkeys(k for s in summaries for k in (s.get("kinds") or [])))
    return [REGISTRY[n] for n in names if n in REGISTRY], [n for n in names if n not in REGISTRY]


from reports.kinds import gsm8k, knowledge_hijack, noisy_recall, pretrained_prompts  # noqa: E402,F401  register the built-in kinds
