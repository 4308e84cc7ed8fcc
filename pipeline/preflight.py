"""Checks the config's classes make of the whole config before any of them is built.

Building is where the cost is: a pretrained model loads, a bigram table or a test set is allocated. So a
LightningModule class may declare, as class attributes:
- ``SUBCOMMANDS``: the main.py subcommands it supports (an evaluation-only module: ``("test",)``);
- ``check_before_build(model_args, data_args, context)``: raises ValueError naming the field for a combination that
  cannot work (e.g. a LASER search with no selection split), and may return a line to print before compute (e.g. the
  estimated time per step). ``context`` holds ``subcommand``, ``device`` and ``max_steps``.
The CLI runs this right after parsing, ``pipeline.sweep --check`` for every task.
"""
from __future__ import annotations

import importlib
import sys

from jsonargparse import Namespace

from run_record.contract import RecordedData, RecordedModule


def _class(class_path: str | None):
    """The config's module class if it declares the record contract (run_record/contract.py), else None."""
    if not class_path:
        return None
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None  # the parser has already refused an unknown class
    return cls if isinstance(cls, type) and issubclass(cls, (RecordedModule, RecordedData)) else None


def _args(ns) -> dict:
    if ns is None:
        return {}
    args = ns.get("init_args") if isinstance(ns, Namespace) else (ns or {}).get("init_args")
    return args.as_dict() if isinstance(args, Namespace) else dict(args or {})


def device(trainer: Namespace) -> str:
    import torch

    accelerator = str(trainer.get("accelerator") or "auto")
    return "cuda" if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available() else "cpu"


def uses_hub(cfg: Namespace) -> bool:
    """A class of the config loads from the Hugging Face hub (declares ``USES_HUB = True``)."""
    parts = [cfg.get("model"), cfg.get("data")]
    classes = [_class(p.get("class_path")) for p in parts if isinstance(p, Namespace)]
    return any(issubclass(c, RecordedModule) and c.USES_HUB for c in classes if c is not None)


SEED_RANGE = (0, 2**32 - 1)  # numpy's, which Lightning's seed_everything seeds too


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_trainer(cfg: Namespace) -> None:
    """Values of the trainer and the seed that would reach compute and fail there with a raw traceback (a modulo by
    zero at step 1, numpy's seed bounds): one line naming the field instead."""
    seed = cfg.get("seed_everything")
    if _number(seed) and not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise ValueError(f"seed_everything must be in {SEED_RANGE[0]}..{SEED_RANGE[1]} (numpy's seed range) or true "
                         f"(a random seed), got {seed}")
    trainer = cfg.get("trainer") or Namespace()
    interval = trainer.get("val_check_interval")
    if interval is not None and (not _number(interval) or interval <= 0 or (isinstance(interval, float) and
                                                                           (interval > 1.0 or interval != interval))):
        raise ValueError(f"trainer.val_check_interval must be a number of steps >= 1 or a fraction of an epoch in "
                         f"(0, 1], got {interval}")
    for key, low in (("log_every_n_steps", 1), ("check_val_every_n_epoch", 1), ("accumulate_grad_batches", 1)):
        value = trainer.get(key)
        if _number(value) and value < low:
            raise ValueError(f"trainer.{key} must be >= {low}, got {value}")


def check(subcommand: str | None, cfg: Namespace, quiet: bool = False) -> None:
    check_trainer(cfg)
    model = cfg.get("model")
    cls = _class(model.get("class_path") if isinstance(model, Namespace) else None)
    if cls is None or not issubclass(cls, RecordedModule):
        return
    allowed = cls.SUBCOMMANDS
    if subcommand and allowed and subcommand not in allowed:
        config = next((str(c) for c in (cfg.get("config") or [])), "<config>")
        raise ValueError(f"{cls.__name__} only evaluates ({' | '.join(allowed)}): run `python main.py {allowed[0]} "
                         f"--config {config}`; `{subcommand}` does not apply to it")
    hook = cls.check_before_build
    context = {"subcommand": subcommand, "device": device(cfg.trainer), "max_steps": cfg.trainer.get("max_steps")}
    note = hook(_args(model), _args(cfg.get("data")), context)
    if note and not quiet:
        print(note, file=sys.stderr)
