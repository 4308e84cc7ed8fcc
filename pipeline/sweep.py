"""Sweep files: a base config plus a grid of overrides, expanded into one task per grid point.

    base: configs/pythia_ioi.yaml
    subcommand: test            # optional, default fit
    grid:
      model.init_args.revision: [step1000, step143000]
      seed_everything: [0, 1]
    slurm: {partition: gpu, time: "02:00:00"}   # optional, read by slurm/submit.py

``python -m pipeline.sweep <sweep file>`` runs the tasks one after another on this machine, each in
``<root>/<task index>/``, then prints and writes the table of ``pipeline.collect``. SLURM array jobs run the same
tasks (one per array index) through ``task_args``.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TASKS_FILE = "tasks.json"


@dataclass
class Sweep:
    name: str
    base: str
    grid: dict[str, list[Any]]
    subcommand: str = "fit"
    slurm: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    @classmethod
    def load(cls, path: str | Path) -> "Sweep":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"sweep file {path} does not exist")
        spec = yaml.safe_load(path.read_text()) or {}
        unknown = set(spec) - {"base", "grid", "subcommand", "slurm"}
        if unknown or "base" not in spec or not isinstance(spec.get("grid"), dict) or not spec["grid"]:
            raise ValueError(f"{path}: a sweep file has base (a config), grid ({{key: [values]}}), and optionally subcommand and slurm; got keys {sorted(spec)}")
        if not Path(spec["base"]).exists():
            raise FileNotFoundError(f"{path}: base config {spec['base']} does not exist")
        for key, values in spec["grid"].items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"{path}: grid.{key} must be a non-empty list, got {values!r}")
        return cls(path.stem, spec["base"], spec["grid"], spec.get("subcommand", "fit"), spec.get("slurm") or {}, str(path))

    def points(self) -> list[dict[str, Any]]:
        keys = list(self.grid)
        return [dict(zip(keys, values)) for values in itertools.product(*(self.grid[k] for k in keys))]

    def task_args(self, index: int, root: str | Path) -> list[str]:
        """``main.py`` arguments of task ``index``: the base config, its grid values, its own root directory."""
        args = [self.subcommand, "--config", self.base]
        for key, value in self.points()[index].items():
            args += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
        return args + ["--trainer.default_root_dir", str(Path(root) / str(index))]


def write_tasks(sweep: Sweep, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / TASKS_FILE).write_text(json.dumps({"sweep": sweep.name, "base": sweep.base, "points": sweep.points()}, indent=2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a sweep's tasks one after another here, or one task (--task).")
    parser.add_argument("sweep_file")
    parser.add_argument("--root", help="sweep directory (default runs/sweeps/<sweep name>)")
    parser.add_argument("--task", type=int, help="run only this task (what each SLURM array task does)")
    args = parser.parse_args(argv)
    sweep = Sweep.load(args.sweep_file)
    root = Path(args.root or f"runs/sweeps/{sweep.name}")
    import main as entry  # the repository's main.py

    sys.argv = sys.argv[:1]  # the task's arguments go to the CLI as `args`, not also through sys.argv
    if args.task is not None:
        entry.main(sweep.task_args(args.task, root))
        return
    write_tasks(sweep, root)
    from pipeline import collect

    for i, point in enumerate(sweep.points()):
        print(f"task {i}: {point}", file=sys.stderr)
        try:
            entry.main(sweep.task_args(i, root))
        except SystemExit as e:  # one bad task does not stop the others; collect lists it
            print(f"task {i} exited with {e.code}", file=sys.stderr)
    collect.main([str(root)])


if __name__ == "__main__":
    main()
