"""Copies of a real run directory in which one callback (or the module) measured nothing: the section it writes when
it measured nothing (a fresh instance's own ``summary()``), none of its history columns. Every page must render
for each (issue 28.3: a report that crashed on what a run legitimately did not measure)."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

from run_record import files
from run_record.contract import (ATTENTION_PROBE, GRADIENT_NOISE, HIJACK_PROBE, LASER_TRUNCATION, MEMORY_PROBE,
                                 SINGULAR_ATTRIBUTION, WEIGHT_SPECTRUM)


def fresh_section(name: str) -> dict:
    from callbacks import (AttentionProbe, GradientNoise, HijackProbe, LaserTruncation, MemoryProbe, SingularAttribution,
                           WeightSpectrumLogger)

    make = {ATTENTION_PROBE: AttentionProbe, GRADIENT_NOISE: GradientNoise, HIJACK_PROBE: HijackProbe,
            LASER_TRUNCATION: lambda: LaserTruncation(targets=["layers.1.ff.w2"], rho=0.0, at_steps=[1]),
            MEMORY_PROBE: MemoryProbe, SINGULAR_ATTRIBUTION: SingularAttribution, WEIGHT_SPECTRUM: WeightSpectrumLogger}[name]
    return make().summary()


HISTORY_PREFIX = {ATTENTION_PROBE: ("probe/",), GRADIENT_NOISE: ("gradnoise/",), HIJACK_PROBE: ("hijack",),
                  LASER_TRUNCATION: ("laser/",), MEMORY_PROBE: ("memory/",), SINGULAR_ATTRIBUTION: ("attribution/",), WEIGHT_SPECTRUM: ("spectrum/",)}


def _rewrite(run: Path, summary: dict, drop_columns) -> None:
    metrics = run / files.METRICS_FILE
    if metrics.is_file():
        rows = files.read_csv_rows(metrics)
        keep = [k for k in (rows[0] if rows else {"step": ""}) if not drop_columns(k)]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=keep, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows([r for r in rows if any(r.get(k) not in ("", None) for k in keep if k != "step")])
        metrics.write_text(out.getvalue())
    for name in list(summary.get("files") or {}):  # the run's own record of what it wrote, kept consistent
        path = run / name
        if path.is_file():
            summary["files"][name] = {"bytes": path.stat().st_size, "sha256": files.sha256(path)}
        else:
            del summary["files"][name]
    (run / files.SUMMARY_FILE).write_text(json.dumps(summary))


def variants(run_dir: Path, into: Path):
    """(label, run directory copy) for each way of measuring nothing."""
    run_dir = Path(run_dir)
    base = json.loads((run_dir / files.SUMMARY_FILE).read_text())
    cases = [(f"{name} measured nothing", {name}) for name in (base.get("callbacks") or {})]
    if HIJACK_PROBE in (base.get("callbacks") or {}):  # what the probe wrote when n_pairs fit no prompt (round 3)
        cases.append(("hijack_probe built no prompt", {"hijack-empty-rows"}))
    cases.append(("no callback measured anything, no metric logged", set(base.get("callbacks") or {}) | {"*"}))
    for i, (label, blank) in enumerate(cases):
        copy = into / f"case{i}"
        shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("report", "wandb", "checkpoints"))
        summary = json.loads(json.dumps(base))
        for name in blank - {"*", "hijack-empty-rows"}:
            summary["callbacks"][name] = fresh_section(name.split("#")[0])
        if "hijack-empty-rows" in blank:
            probe = summary["callbacks"][HIJACK_PROBE]
            probe["theory_fit"] = {}
            for by_t in probe["results"].values():
                for by_v in by_t.values():
                    for r in by_v.values():
                        r.update(boundary=None, by_n={})
        if os.path.isfile(copy / files.SPECTRA_FILE) and WEIGHT_SPECTRUM in blank:
            (copy / files.SPECTRA_FILE).unlink()
        prefixes = tuple(p for name in blank - {"*", "hijack-empty-rows"} for p in HISTORY_PREFIX.get(name.split("#")[0], ()))
        everything = "*" in blank
        if everything:
            summary["metrics"], summary["variants"] = {}, {}
        _rewrite(copy, summary, lambda k: k != "step" and (everything or k.startswith(prefixes)))
        yield label, copy

