"""Sweep files: a base config plus a grid of overrides, expanded into one task per grid point.

    base: configs/pythia_ioi.yaml
    subcommand: test            # optional, default fit
    grid:
      model.init_args.revision: [step1000, step143000]
      seed_everything: [0, 1]
    overrides:                  # optional: fixed for every task, not grid columns
      data.init_args.n_test: 512
    slurm: {partition: gpu, time: "02:00:00"}   # optional, read by slurm/submit.py

``python -m pipeline.sweep <sweep file>`` checks every task's config, runs the tasks one after another on this
machine, each in ``<root>/<task index>/``, then prints and writes the table of ``reports.table`` and exits
non-zero if a task failed. ``--check`` only resolves every task's config through the CLI's parser (what
``slurm/submit.py`` runs before submitting). SLURM array jobs run the same tasks (one per array index) through
``task_args``.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from run_record import run_dir
from run_record import files
from run_record.files import ATTEMPT_FILE, TASK_ERROR_FILE, TASKS_FILE

INTERRUPTED, TERMINATED = 130, 143  # a run's exit code after Ctrl-C, after SIGTERM


@dataclass
class Sweep:
    name: str
    base: str
    grid: dict[str, list[Any]]
    subcommand: str = "fit"
    slurm: dict[str, Any] = field(default_factory=dict)
    path: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)  # the same for every task: not a grid point's key

    @classmethod
    def load(cls, path: str | Path) -> "Sweep":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"sweep file {path} does not exist")
        try:
            spec = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise ValueError(f"{path}: YAML syntax error{where}: {getattr(e, 'problem', None) or e}") from None
        if not isinstance(spec, dict):
            raise ValueError(f"{path}: a sweep file is a mapping with base, grid (and optionally overrides, subcommand, slurm)")
        unknown = set(spec) - {"base", "grid", "overrides", "subcommand", "slurm"}
        if unknown or "base" not in spec or not isinstance(spec.get("grid"), dict) or not spec["grid"]:
            raise ValueError(f"{path}: a sweep file has base (a config), grid ({{key: [values]}}), and optionally overrides "
                             f"({{key: value}}), subcommand and slurm; got keys {sorted(spec)}")
        overrides = spec.get("overrides") or {}
        if not isinstance(overrides, dict):
            raise ValueError(f"{path}: overrides must be a mapping {{key: value}}, got {overrides!r}")
        both = sorted(set(overrides) & set(spec["grid"]))
        if both:
            raise ValueError(f"{path}: overrides.{both[0]} is also a grid key: a setting is fixed or swept, not both")
        if not Path(spec["base"]).exists():
            raise FileNotFoundError(f"{path}: base config {spec['base']} does not exist")
        for key, values in spec["grid"].items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"{path}: grid.{key} must be a non-empty list, got {values!r}")
        return cls(path.stem, spec["base"], spec["grid"], spec.get("subcommand", "fit"), spec.get("slurm") or {}, str(path),
                   overrides)

    def points(self) -> list[dict[str, Any]]:
        keys = list(self.grid)
        return [dict(zip(keys, values)) for values in itertools.product(*(self.grid[k] for k in keys))]

    def task_args(self, index: int, root: str | Path) -> list[str]:
        """``main.py`` arguments of task ``index``: the base config, the overrides, its grid values, its own root
        directory."""
        args = [self.subcommand, "--config", self.base]
        for key, value in (self.overrides | self.points()[index]).items():
            args += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
        return args + ["--trainer.default_root_dir", str(Path(root) / str(index))]


def check(sweep: Sweep, root: str | Path = "runs/sweeps/check") -> dict[int, str]:
    """Every task's arguments through the CLI's parser and the config classes' own checks (pipeline/preflight.py),
    nothing instantiated: {task: error line} of the bad ones.

    One parser serves all the tasks (building it is the slow part)."""
    from pipeline import preflight
    from pipeline.cli import ExperimentCLI
    from pipeline.config_errors import ConfigError, check_config_files

    class Parsed(Exception):
        """Raised as soon as the config is parsed, before anything is instantiated."""

    class ParseOnly(ExperimentCLI):
        def before_instantiate_classes(self) -> None:
            raise Parsed(self)

    errors: dict[int, str] = {}
    cli = None
    for i in range(len(sweep.points())):
        args = sweep.task_args(i, root)
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                if cli is None:
                    try:
                        ParseOnly(args=args)
                    except Parsed as parsed:
                        cli = parsed.args[0]
                else:
                    check_config_files(args)
                    cli.parse_arguments(cli.parser, args)
                subcommand = cli.config.subcommand
                preflight.check(subcommand, cli.config[subcommand], quiet=True)
        except (ValueError, FileNotFoundError) as e:
            errors[i] = f"invalid configuration: {e}"
        except ConfigError as e:
            errors[i] = e.line
        except SystemExit:
            lines = stderr.getvalue().strip().splitlines()
            errors[i] = lines[-1] if lines else "invalid arguments"
    return errors


def describe(sweep: Sweep, errors: dict[int, str]) -> str:
    return "\n".join(f"task {i} {json.dumps(sweep.points()[i])}:\n  {line}" for i, line in sorted(errors.items()))


def write_tasks(sweep: Sweep, root: Path) -> None:
    files.write_json(root / TASKS_FILE, {"sweep": sweep.name, "base": sweep.base, "overrides": sweep.overrides,
                                         "points": sweep.points()})


def start_attempt(sweep: Sweep, root: Path, task: int, attempt: str | None = None) -> None:
    """Record task ``task``'s newest attempt before it runs: ``<task>/attempt.json`` (its id and grid point), no
    stale ``error.txt``, and the id in the environment, which the run records in its summary. The sweep's table
    counts a run for the task only if it was made by this attempt at this grid point (reports/table.py).
    A requeued SLURM task keeps its attempt (``<array job>_<task>``): it continues the same run."""
    point = sweep.points()[task]
    attempt = attempt or f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    record = {"sweep": sweep.name, "task": task, "attempt": attempt, "point": point,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    directory = root / str(task)
    with contextlib.suppress(FileNotFoundError):
        (directory / TASK_ERROR_FILE).unlink()
    files.write_json(directory / ATTEMPT_FILE, record)
    os.environ[files.SWEEP_TASK_ENV] = json.dumps(record)


def record_failure(root: Path, task: int, line: str) -> None:
    """Why the attempt failed, for the table (a run that wrote a summary says it there too)."""
    files.write_text(root / str(task) / TASK_ERROR_FILE, line + "\n")


def run_task(sweep: Sweep, root: Path, task: int, attempt: str | None = None, reraise: bool = False) -> str | None:
    """One attempt at a task through the CLI: None, or the error line of a failed attempt (``reraise``: and then
    exit with the run's own exit code, as an array task does)."""
    from pipeline.cli import ExperimentCLI

    start_attempt(sweep, root, task, attempt)
    try:
        ExperimentCLI(args=sweep.task_args(task, root))
        return None
    except KeyboardInterrupt:  # Ctrl-C outside training (building the model...): the sweep stops, nothing failed
        raise SystemExit(INTERRUPTED) from None
    except SystemExit as e:  # one bad task does not stop the others; the table lists it
        if e.code in (0, None):
            return None
        if e.code in (INTERRUPTED, TERMINATED):  # stopped from outside: the run says interrupted; the sweep stops
            raise
        record_failure(root, task, getattr(e, "line", None) or f"exited with {e.code}")
        if reraise:
            raise
        return getattr(e, "line", None) or f"exited with {e.code}"
    except Exception as e:  # noqa: BLE001  likewise for a crash
        record_failure(root, task, f"{type(e).__name__}: {e}")
        if reraise:
            raise
        return f"{type(e).__name__}: {e}"
    finally:
        os.environ.pop(files.SWEEP_TASK_ENV, None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a sweep's tasks one after another here, or one task (--task).")
    parser.add_argument("sweep_file")
    parser.add_argument("--root", help="sweep directory (default runs/sweeps/<sweep name>)")
    parser.add_argument("--task", type=int, help="run only this task (what each SLURM array task does); with --pack, "
                        "the array task's index: tasks task*pack .. task*pack+pack-1, at once")
    parser.add_argument("--pack", type=int, default=1, help="runs that share one array task and its GPU (pipeline/packing.py)")
    parser.add_argument("--attempt", help=argparse.SUPPRESS)  # set by the packer for the runs it starts
    parser.add_argument("--check", action="store_true", help="only check every task's config; run nothing")
    args = parser.parse_args(argv)
    if args.pack < 1:
        raise SystemExit(f"error: --pack {args.pack}: runs per array task must be >= 1")
    try:
        sweep = Sweep.load(args.sweep_file)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    root = Path(args.root or f"runs/sweeps/{sweep.name}")
    sys.argv = sys.argv[:1]  # the task's arguments go to the CLI as `args`, not also through sys.argv
    n = len(sweep.points())
    if args.task is not None and not (root / TASKS_FILE).is_file():  # a local --task / --pack run is a sweep too
        try:
            write_tasks(sweep, root)
        except files.WriteError as e:
            raise SystemExit(f"error: {e}") from None
    if args.task is not None and args.pack > 1:  # an array task running several grid points at once
        from pipeline import packing

        if not 0 <= args.task < packing.n_groups(n, args.pack):
            raise SystemExit(f"error: --task {args.task}: {n} tasks {args.pack} at a time make array tasks 0 to "
                             f"{packing.n_groups(n, args.pack) - 1}")
        cpus = int(os.environ.get("SLURM_CPUS_PER_TASK") or os.cpu_count() or 1)
        raise SystemExit(packing.run_group(args.sweep_file, root, packing.group(n, args.pack, args.task),
                                           os.environ.get("SLURM_ARRAY_JOB_ID"), max(1, cpus // args.pack)))
    if args.task is not None:
        if not 0 <= args.task < n:
            raise SystemExit(f"error: --task {args.task}: the sweep has tasks 0 to {n - 1}")
        array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
        job = args.attempt or (f"{array}_{task}" if array and task else
                               os.environ.get("SLURM_JOB_ID") and f"{os.environ['SLURM_JOB_ID']}_{args.task}")
        if job:  # a requeued array task must find its run again
            os.environ[run_dir.RUN_VERSION] = job
        run_task(sweep, root, args.task, attempt=job or None, reraise=True)
        return
    errors = check(sweep, root)
    if errors:
        raise SystemExit(f"error: {len(errors)} of {len(sweep.points())} tasks of {sweep.path} have invalid configs; "
                         f"nothing was run:\n{describe(sweep, errors)}")
    if args.check:
        print(f"{len(sweep.points())} tasks of {sweep.path}: every config is valid")
        return
    try:
        write_tasks(sweep, root)
    except files.WriteError as e:
        raise SystemExit(f"error: {e}") from None
    from reports import table  # the reader of what the runs wrote (nothing in reports imports the pipeline's drivers)

    failed: dict[int, str] = {}
    for i, point in enumerate(sweep.points()):
        print(f"task {i}/{len(sweep.points())}: {point}", file=sys.stderr)
        try:
            error = run_task(sweep, root, i)
        except SystemExit as e:  # Ctrl-C or SIGTERM: the whole sweep stops here, the task is interrupted
            print(f"\nsweep {sweep.name} stopped at task {i} (exit {e.code}); tasks {i + 1}..{n - 1} were not run. "
                  f"Run them later: python -m pipeline.sweep {sweep.path} --task <i> --root {root}", file=sys.stderr)
            raise
        if error is not None:
            failed[i] = error
            print(f"task {i} failed: {error}", file=sys.stderr)
    table.main([str(root)])
    if failed:
        raise SystemExit(f"error: {len(failed)} of {len(sweep.points())} tasks failed:\n{describe(sweep, failed)}")


if __name__ == "__main__":
    main()
