"""Checkpoints given with ``--ckpt_path``: readable, and built for the model the config describes.

Lightning's CLI would load the checkpoint's hyperparameters over the user's config, so new LASER settings were
silently replaced by the checkpoint's and a different architecture was trained as the old one. Here the config
wins: evaluation settings (a module's ``EVALUATION_HPARAMS``, e.g. LASER targets and rhos) are free to differ,
and any other hyperparameter that differs from the checkpoint's is refused, naming both values.
"""
from __future__ import annotations

import errno
import os
from typing import Any, Iterable

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from run_record.contract import RecordedModule
from run_record.files import atomic_writer, no_space


class CheckpointError(ValueError):
    """The checkpoint is missing, unreadable, or does not fit the configured model."""


def read(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise CheckpointError(f"--ckpt_path {path}: no such file")
    try:
        # memory-mapped: only the hyperparameters are read here; Lightning loads the weights when it restores
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001  torch raises many types for truncated or foreign files
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        # torch's own advice (retry with weights_only=False) is wrong here: the file is damaged or of another kind
        detail = type(e).__name__ + (f": {first}" if first and "weights_only" not in first else "")
        raise CheckpointError(f"--ckpt_path {path}: not a readable Lightning checkpoint, damaged or of another kind ({detail})") from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"--ckpt_path {path}: not a Lightning checkpoint (no state_dict)")
    return ckpt


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out |= _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return {prefix: value}


def conflicts(saved: dict[str, Any], configured: dict[str, Any], free: Iterable[str] = ()) -> list[str]:
    """``model.init_args.<key>: the config says X, the checkpoint has Y`` for every hyperparameter (nested keys flattened)
    that differs, except the top-level keys in ``free``."""
    free = set(free) | {"_instantiator", "_class_path"}
    saved = {k: v for k, v in saved.items() if k not in free}
    configured = {k: v for k, v in configured.items() if k not in free}
    a, b = _flatten(configured, ""), _flatten(saved, "")
    return [f"model.init_args.{k}: the config says {a.get(k)!r}, the checkpoint has {b.get(k)!r}"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def check_fits(path: str, ckpt: dict[str, Any], module: torch.nn.Module) -> None:
    free = module.EVALUATION_HPARAMS if isinstance(module, RecordedModule) else ()
    found = conflicts(ckpt.get("hyper_parameters") or {}, dict(getattr(module, "hparams", {})), free)
    if found:
        raise CheckpointError(
            f"--ckpt_path {path} was trained with other settings than this config; the checkpoint's settings are not "
            f"applied silently. Use the run's own config.yaml, or change: {'; '.join(found)}"
        )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written whole: a hidden partial file in the checkpoint's own directory, synced, then renamed.

    Lightning's own save goes through a temporary file in the system's temp directory and then copies it into the run
    directory when that is another file system; a full disk or a SIGKILL during that copy left a truncated ``.ckpt``
    that the printed resume command then failed to load. The CLI gives every Trainer this plugin."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with atomic_writer(path, "wb") as f:  # our own handle: closed (its space freed) if the save fails
            try:
                torch.save(checkpoint, f)
            except RuntimeError as e:  # torch reports a failed write (ENOSPC...) as a RuntimeError
                raise OSError(errno.ENOSPC if no_space(path) else errno.EIO,
                              "No space left on device" if no_space(path) else f"torch.save failed: {e}") from e
