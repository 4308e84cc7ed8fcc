"""python -m reports <run or sweep dir> [--wandb --entity E --project P]  |  python -m reports --wandb-save <json>
python -m reports --latest runs      # the newest run under runs/ (what make demo does after training)

Writes <dir>/report/index.html (self-contained: open it from the file system) and report/figures/*.png|pdf, and
report/wandb_report.json (the same panels as a W&B report spec). With --wandb, also saves the W&B report and prints
its URL; without network or credentials that fails within seconds, naming the --wandb-save route.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from run_record.files import REPORT_DIR, SUMMARY_FILE, WriteError


def main(argv: list[str] | None = None) -> Path | None:
    parser = argparse.ArgumentParser(prog="python -m reports", description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", help="a run directory (runs/<name>/<version>) or a sweep directory")
    parser.add_argument("--wandb", action="store_true", help="also save the report to W&B")
    parser.add_argument("--entity", help="W&B entity (user or team) of the report")
    parser.add_argument("--project", help="W&B project (default: the runs' own)")
    parser.add_argument("--wandb-save", metavar="JSON", help="save a report spec written earlier (report/wandb_report.json)")
    parser.add_argument("--latest", action="store_true", help="report on the newest run under the directory (make demo)")
    args = parser.parse_args(argv)
    from reports import build, wandb_report
    from reports.run import ReportError, kind_of

    try:
        if args.wandb_save:
            spec, _ = wandb_report.load(args.wandb_save)
            print(wandb_report.save(spec))
            return None
        if not args.directory:
            parser.error("give a run or sweep directory (or --wandb-save <json>)")
        path = Path(args.directory)
        if args.latest:
            summaries = sorted(path.glob(f"**/{SUMMARY_FILE}"), key=lambda p: p.stat().st_mtime)
            if not summaries:
                raise ReportError(f"no run under {path} (no {SUMMARY_FILE})")
            path = summaries[-1].parent
        start = time.perf_counter()
        kind_of(path)  # a clear error for a directory that is neither
        record = build.load(path)
        page = build.report(path, record)
        print(f"report: {page.resolve()}  ({time.perf_counter() - start:.1f} s)")
        spec = _spec(path, args, record)
        if spec is not None:
            exported = wandb_report.export(spec, path / REPORT_DIR / wandb_report.SPEC_FILE)
            print(f"W&B report spec: {exported}")
            if args.wandb:
                print(f"W&B report: {wandb_report.save(spec)}")
        return page
    except (ReportError, WriteError) as e:  # a directory that cannot be reported on, or written to
        raise SystemExit(f"error: {e}") from None
    except OSError as e:  # e.g. report/ cannot be created on a read-only file system
        raise SystemExit(f"error: could not write {e.filename}: {e.strerror}") from None


def _spec(path: Path, args, record) -> dict | None:
    """The W&B report spec of a run or sweep (its kinds' panels), keys checked against what was logged; None
    without an entity."""
    from reports import wandb_report
    from reports.kinds import SweepRecord

    if isinstance(record, SweepRecord):
        runs = list(record.runs.values())
        if not runs:
            return None
        info = runs[0].summary.get("wandb") or {}
        panels = wandb_report.panels_for_sweep(record)
        logged = set().union(*(set(r.history) | set(r.summary.get("metrics") or {}) for r in runs))
        group, ids, what = info.get("group"), [(r.summary.get("wandb") or {}).get("id") for r in runs], "sweep"
        if not str(group or "").startswith(path.name):  # not a SLURM sweep's own group (<sweep>_<array job>): by ids
            group = None
    else:
        info = record.summary.get("wandb") or {}
        panels, group, ids, what = wandb_report.panels_for_run(record), None, [info.get("id")], "run"
        logged = set(record.history) | set(record.summary.get("metrics") or {})
    project = args.project or info.get("project")
    if not args.entity or not project:
        if args.wandb:
            raise SystemExit("error: --wandb needs --entity (and --project when the runs logged no W&B project)")
        return None
    wandb_report.check_keys(panels, logged)
    return wandb_report.spec(args.entity, project, f"{what} {path.name}", group, panels, [i for i in ids if i])


if __name__ == "__main__":
    main()
