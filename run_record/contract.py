"""What a LightningModule, a DataModule, a callback or a logger may contribute to the run record, declared once.

Every contributor subclasses one of the bases below and overrides only the hooks declared there; ``RunSummary``
(run_record/summary.py) and the CLI call the hooks on instances of these bases and never probe for a method by its
name. tests/test_record_contract.py checks every shipped contributor against this declaration: a class that writes
into the record without its base, a misspelt hook (``sumary``), or two callbacks claiming one section fail it.

A callback's section of ``summary.json["callbacks"]`` is keyed by its declared ``record_name`` (below, ``SECTIONS``),
not by its class name: renaming a class leaves every reader working.
"""
from __future__ import annotations

from typing import Any, ClassVar

# summary.json["callbacks"] sections: the declared name of each callback that writes one. Readers use these names.
ATTENTION_PROBE = "attention_probe"
GRADIENT_NOISE = "gradient_noise"
HIJACK_PROBE = "hijack_probe"
LASER_TRUNCATION = "laser_truncation"
MEMORY_PROBE = "memory_probe"
SINGULAR_ATTRIBUTION = "singular_attribution"
WEIGHT_SPECTRUM = "weight_spectrum"
SECTIONS = (ATTENTION_PROBE, GRADIENT_NOISE, HIJACK_PROBE, LASER_TRUNCATION, MEMORY_PROBE, SINGULAR_ATTRIBUTION,
            WEIGHT_SPECTRUM)
# schema 2 keyed sections by class name: readers of older run directories find them under these
LEGACY_SECTION_NAMES = {"AttentionProbe": ATTENTION_PROBE, "GradientNoise": GRADIENT_NOISE, "HijackProbe": HIJACK_PROBE,
                        "LaserTruncation": LASER_TRUNCATION, "WeightSpectrumLogger": WEIGHT_SPECTRUM}


class RecordWriter:
    """Anything that writes into a run directory. Both hooks are called by RunSummary on global rank zero."""

    def record_kinds(self) -> list[str]:
        """The experiment kinds (run_record/kinds.py) this contributes to summary.json's ``kinds``."""
        return []

    def record_files(self) -> list[str]:
        """Paths of the files written into the run directory so far, flushed now (sizes and digests are recorded)."""
        return []


class RecordedModule(RecordWriter):
    """A LightningModule of this project (``class M(RecordedModule, L.LightningModule)``)."""

    SUBCOMMANDS: ClassVar[tuple[str, ...] | None] = None  # main.py subcommands it supports; None: all
    USES_HUB: ClassVar[bool] = False  # loads from the Hugging Face hub: the CLI decides the hub mode first
    EVALUATION_HPARAMS: ClassVar[tuple[str, ...]] = ()  # hparams free to differ from a --ckpt_path's
    trained_by_fit: ClassVar[bool] = False  # weights come from fit: validate/test without a checkpoint are untrained
    results_title: ClassVar[str] = "Results"  # the title of the printed results table
    evaluated_untrained: bool = False  # set by the CLI: evaluated at its random initialisation

    @staticmethod
    def check_before_build(model: dict, data: dict, context: dict) -> str | None:
        """From the config alone, before anything is built or loaded: raise ValueError naming the field, or return a
        line to print (an estimate). ``context``: subcommand, device, max_steps."""
        return None

    def check_data(self, datamodule: Any) -> None:
        """Built, before compute: raise ValueError naming the field where the model and the data do not fit."""

    def variant_specs(self) -> dict[str, dict]:
        """summary.json ``variant_specs``: what each variant is (its matrices' ranks); readers never parse a name."""
        return {}

    def run_info(self) -> dict | None:
        """summary.json ``model``: what was evaluated (a pretrained checkpoint's resolved commit...)."""
        return None

    def results_summary(self) -> dict | None:
        """summary.json ``results``: what the module measured beyond scalar metrics (its kind's schema)."""
        return None

    def console_results(self, variants: dict[str, dict[str, float | None]]) -> tuple[dict, str]:
        """What the console's last table shows of summary.json ``variants`` (all of them by default), and a line after
        it (the choice of a search); the page and summary.json keep everything."""
        return variants, ""


class RecordedData(RecordWriter):
    """A LightningDataModule of this project."""

    def check_trainer(self, trainer: Any, subcommand: str | None = None) -> None:
        """Built, before compute: raise ValueError naming the field where the data cannot serve this trainer."""


class RecordedCallback(RecordWriter):
    """A callback of this project. ``record_name`` (one of ``SECTIONS``) is its section of summary.json
    ``callbacks``; None: it writes no section."""

    record_name: ClassVar[str | None] = None

    def check_config(self, model: Any, datamodule: Any) -> None:
        """Built, before compute: raise ValueError naming the field (patterns that match nothing, sizes...)."""

    def check_trainer(self, trainer: Any) -> None:
        """Built, before ``fit``: raise ValueError naming the field (steps that never come...)."""

    def summary(self) -> dict | None:
        """Its section of summary.json ``callbacks`` (when ``record_name`` is set)."""
        return None

    def timing(self) -> dict | None:
        """summary.json ``timing`` (the step time and the estimate); one callback gives it."""
        return None

    @property
    def stops_for_requeue(self) -> bool:
        """The fit stopped for a SLURM requeue: the summary says ``requeued``, not ``completed``."""
        return False


# the hooks each base declares, for the contract test (and nothing else)
def declared(base: type) -> set[str]:
    names = set()
    for cls in base.__mro__:
        if cls is object:
            continue
        names |= {n for n in vars(cls) if not n.startswith("__")}
    return names


def section(summary: dict, name: str) -> dict:
    """The section ``name`` of summary.json ``callbacks`` (the first of its kind), {} if the run had none; schema 2
    records keyed it by class name."""
    return sections(summary, name)[0] if sections(summary, name) else {}


def sections(summary: dict, name: str) -> list[dict]:
    """Every section of callback ``name`` (``laser_truncation``, ``laser_truncation#2``...), in order."""
    out = []
    for key, value in (summary.get("callbacks") or {}).items():
        base = key.split("#", 1)[0]
        if LEGACY_SECTION_NAMES.get(base, base) == name and isinstance(value, dict):
            out.append(value)
    return out
