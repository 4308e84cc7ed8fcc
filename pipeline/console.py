"""What the console says at the end of a run, last: the W&B run in one line, the results table, the run directory and
the report's path. Lightning's install tips and W&B's history sparklines (WANDB_QUIET) stay out of the way."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


# Lightning's lines that say nothing about this run: its install tip, and which accelerators exist (summary.json's
# machine section records the devices used)
NOISE = ("Tip: For seamless", "GPU available:", "TPU available:", "HPU available:",
         "Trainer already configured with model summary callbacks")  # ours replaces the default (model_summary)


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(n in record.getMessage() for n in NOISE)


class _NoZeroFlops(logging.Filter):
    """The model summary's total-FLOPs line when it is 0: Lightning counts FLOPs only for a module with an
    example_input_array, so the 0 is not a measurement (ModelSummaryWithoutZeroFlops drops its column)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        lines = message.split("\n")
        kept = [line for line in lines if line.split() not in (["0", "Total", "Flops"], ["Total", "FLOPs:", "0"])]
        if len(kept) < len(lines):
            record.msg, record.args = "\n".join(kept), ()
        return True


def model_summary():
    """Lightning's model summary (its plain-text table, through its logger), without the FLOPs column when Lightning
    counted none: every other column as Lightning prints it."""
    from lightning.pytorch.callbacks import ModelSummary

    class ModelSummaryWithoutZeroFlops(ModelSummary):
        @staticmethod
        def summarize(summary_data, total_parameters, trainable_parameters, model_size, total_training_modes,
                      total_flops, **kwargs) -> None:
            if not total_flops:
                summary_data = [column for column in summary_data if column[0] != "FLOPs"]
            ModelSummary.summarize(summary_data, total_parameters, trainable_parameters, model_size, total_training_modes,
                                   total_flops, **kwargs)

    return ModelSummaryWithoutZeroFlops()


def quiet() -> None:
    """Lightning's tips and accelerator lines off; its own deprecation of a torch pytree check (not this project's
    code) silenced; W&B's start-up lines and end-of-run history off (its own settings, unless the user set them)."""
    import warnings

    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_NoTips())
    logging.getLogger("lightning.pytorch.callbacks.model_summary").addFilter(_NoZeroFlops())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
    os.environ.setdefault("WANDB_QUIET", "true")
    # W&B's own start-up lines (offline directory, "wandb online", "wandb leet"): the run's W&B mode is printed
    # first and its sync command last (finish), so nothing is lost
    os.environ.setdefault("WANDB_SILENT", "true")


def wandb_line(summary: dict) -> str | None:
    info = summary.get("wandb") or {}
    if info.get("mode") == "online" and info.get("url"):
        return f"W&B run: {info['url']}"
    run_files = Path(info.get("dir") or "").parent
    if info.get("mode") in ("offline", "dryrun") and info.get("dir") and run_files.is_dir():
        return f"W&B (offline): wandb sync {run_files}"
    return None


def finish(summary_callback, run_dir: Path, write_report: bool) -> None:
    """After the run (rank zero): build the report, then print what matters, in this order, last."""
    summary = getattr(summary_callback, "final", None) or {}
    if not summary:
        return
    lines = [line] if (line := wandb_line(summary)) else []
    if summary.get("weights") == "random initialisation":  # the summary knows: the console says it, last
        lines.append("Untrained: these numbers are of the model's random initialisation (no --ckpt_path was given).")
    if getattr(summary_callback, "results_text", None):
        lines.append(summary_callback.results_text)
    lines.append(f"Run directory: {run_dir}")
    if write_report:
        from reports.build import report
        from reports.run import ReportError

        try:
            lines.append(f"Report: {report(run_dir)}")
        except (ReportError, OSError) as e:  # the run's own files are written; a report can be made later
            lines.append(f"Report: not written ({e}); later: python -m reports {run_dir}")
    else:
        lines.append(f"Report: python -m reports {run_dir}")
    sys.stdout.flush()
    print("\n" + "\n\n".join(lines), flush=True)
