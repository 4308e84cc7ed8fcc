"""The local report's panels as a W&B report (wandb_workspaces.reports.v2), built offline, saved where W&B answers.

A compute node without network writes the report's spec next to index.html (``report/wandb_report.json``: our
panel list, plus the library's own report model as JSON); a login node saves it with
``python -m reports --wandb-save <that json>``. The metric keys come from lightning_modules/metric_keys.py, the
names the modules and callbacks log under, and a spec is checked against the keys the runs actually logged.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightning_modules.metric_keys import RECALL_METRICS, STEP, eval_key, probe_key, split_eval_key, split_metric
from reports.run import ReportError, RunRecord
from run_record.files import write_text

SPEC_FILE = "wandb_report.json"


def panels_for_run(run: RunRecord) -> list[dict[str, Any]]:
    """Line plots of the same series as the local figures (keys that this run logged); an evaluation-only run
    (``main.py test``: Pythia prompts, GSM8K) gets one bar plot per metric over its variants instead."""
    variants = list((run.summary.get("variants") or {}))
    logged = set(run.history) | set(run.summary.get("metrics") or {})
    out = [{"kind": "line", "title": f"clean-test {m} over training", "y": [eval_key("val", v, m) for v in variants]}
           for m in ("p_noise", "p_correct", "acc")]
    tested: dict[str, list[str]] = {}
    for key in sorted(k for k in logged if k.startswith("test/")):
        parts = split_eval_key(key)
        name = split_metric(parts[2])[0] if parts else ""
        # one panel per metric, all variants and test sets (shot counts) in it; per prompt type: the local report
        if parts and ":" not in parts[1] and not name.endswith("_stderr") and name not in ("n_docs", "truncated_prompts"):
            tested.setdefault(name, []).append(key)
    out += [{"kind": "bar", "title": f"{m} per variant", "y": keys} for m, keys in tested.items()]
    probes = [k for k in run.history if k.startswith("probe/")]
    if probes:
        out.append({"kind": "line", "title": "attention probes", "y": [k for k in probes if not k.endswith("noise_margin")]})
        out.append({"kind": "line", "title": "FF noise margins", "y": [k for k in probes if k.endswith("noise_margin")]})
    ranks = [k for k in run.history if k.startswith("spectrum/") and k.endswith(("stable_rank", "effective_rank"))]
    if ranks:
        out.append({"kind": "line", "title": "stable and effective ranks", "y": ranks})
    return [p | {"y": [k for k in p["y"] if k in logged]} for p in out if any(k in logged for k in p["y"])]


def panels_for_sweep(grid_keys: list[str], pretrained: bool, probes: bool = False, logged: set[str] | None = None) -> list[dict[str, Any]]:
    """Final metrics grouped by the swept config keys (bar plots), and the full model's curves. GSM8K sweeps (keys
    ``test/full/em_*@<k>shot`` logged) plot exact match per shot count."""
    gsm8k = sorted(k for k in (logged or set()) if k.startswith("test/full/em_") and "_stderr" not in k and "selection" not in k)
    if gsm8k:
        return [{"kind": "bar", "title": f"full-model exact match by {key}", "y": gsm8k, "groupby": f"config.{key}"}
                for key in grid_keys]
    metrics = ("p_answer", "p_generic", "log_ratio", "logit_diff") if pretrained else RECALL_METRICS[:3]
    stage = "test" if pretrained else "val"
    out = []
    for key in grid_keys:
        for m in metrics:
            out.append({"kind": "bar", "title": f"final {m} by {key}", "y": [eval_key(stage, "full", m)], "groupby": f"config.{key}"})
    if not pretrained:
        out.append({"kind": "line", "title": "full model p_noise over training, all tasks", "y": [eval_key("val", "full", "p_noise")]})
        if probes:  # the runs had AttentionProbe on
            out.append({"kind": "line", "title": "layer-2 FF noise margin", "y": [probe_key(1, "ff", "noise_margin")]})
    if logged is not None:  # e.g. logit_diff exists for IOI prompts only
        out = [p for p in out if all(k in logged for k in p["y"])]
    return out


def check_keys(panels: list[dict[str, Any]], logged: set[str]) -> None:
    """Every key a panel plots was logged by the runs; a misspelled key is an error naming it."""
    missing = sorted({k for p in panels for k in p["y"]} - logged)
    if missing:
        raise ReportError(f"W&B report panels reference keys no run logged: {missing}")


def spec(entity: str, project: str, title: str, group: str | None, panels: list[dict[str, Any]], run_ids: list[str]) -> dict:
    return {"entity": entity, "project": project, "title": title, "group": group, "run_ids": run_ids, "panels": panels}


def build(s: dict, linked: bool = False):
    """The wandb_workspaces Report of a spec. ``linked`` gives the runset its entity and project, which the library
    resolves through the W&B API (saving needs that); unlinked builds need no server."""
    import wandb_workspaces.reports.v2 as wr

    if s.get("group"):
        filters = f'Metric("group") == "{s["group"]}"'
    elif s.get("run_ids"):
        filters = " or ".join(f'Metric("name") == "{i}"' for i in s["run_ids"])
    else:
        filters = ""
    runset = wr.Runset(entity=s["entity"] if linked else "", project=s["project"] if linked else "", filters=filters)
    panels = []
    for p in s["panels"]:
        if p["kind"] == "bar":
            panels.append(wr.BarPlot(title=p["title"], metrics=p["y"], groupby=p.get("groupby")))
        else:
            panels.append(wr.LinePlot(title=p["title"], x=STEP, y=p["y"]))
    blocks = [wr.H1(text=s["title"]), wr.P(text="Generated by `python -m reports` from the same records as the local report."),
              wr.PanelGrid(runsets=[runset], panels=panels)]
    return wr.Report(entity=s["entity"], project=s["project"], title=s["title"], blocks=blocks)


def export(s: dict, path: Path) -> Path:
    """Our spec plus the library's report model (JSON), written with no network."""
    model = json.loads(build(s)._to_model().model_dump_json())
    return write_text(path, json.dumps({"spec": s, "report": model}, indent=1))


def load(path: str | Path):
    """(spec, Report rebuilt from the exported model JSON): the export round-trips into a report object."""
    import wandb_workspaces.reports.v2 as wr
    from wandb_workspaces.reports.v2 import internal

    from run_record.files import Damaged, read_json

    try:
        data = read_json(path)
        return data["spec"], wr.Report._from_model(internal.ReportViewspec.model_validate(data["report"]))
    except FileNotFoundError as e:
        raise ReportError(f"--wandb-save {path}: no such file") from e
    except (Damaged, KeyError, TypeError, ValueError) as e:
        raise ReportError(f"--wandb-save {path}: not a report spec written by python -m reports ({e})") from e


def save(s: dict) -> str:
    """Save the report to W&B (needs the network and credentials; checked first, within seconds)."""
    from pipeline import wandb_mode

    if wandb_mode.credentials_source() is None:
        raise ReportError(f"no W&B credentials for {wandb_mode.base_url()}: run `wandb login` (or set WANDB_API_KEY) on a "
                          "machine with network, then `python -m reports --wandb-save <report/wandb_report.json>`")
    if not wandb_mode.reachable():
        raise ReportError(f"the W&B server {wandb_mode.base_url()} did not answer within 3 s: the spec is written; save it "
                          "from a machine with network with `python -m reports --wandb-save <report/wandb_report.json>`")
    report = build(s, linked=True)
    report.save()
    return report.url
