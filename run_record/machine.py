"""What ran a run, for summary.json ``machine``: the same commit and seed give different digits on machines whose CPU
kernels round differently (README, "Which digits depend on the machine"), so a record says which machine it is."""
from __future__ import annotations

import os
import platform
import sys
from typing import Any


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def describe(trainer: Any) -> dict[str, Any]:
    import lightning
    import torch

    device = str(trainer.strategy.root_device) if trainer is not None else "cpu"
    gpu = torch.cuda.get_device_name(trainer.strategy.root_device) if device.startswith("cuda") else None
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "device": device,
        "gpu": gpu,
        "torch_threads": torch.get_num_threads(),
        # the kernels' instruction set, and the settings that pin it (README, "Which digits depend on the machine")
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "portable_cpu": os.environ.get("MKL_CBWR") == "COMPATIBLE" and os.environ.get("ATEN_CPU_CAPABILITY") == "default",
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        # what ran: Lightning runs "16-mixed" as "bf16-mixed" on a CPU (with a warning), whatever the config says
        "precision": str(trainer.precision) if trainer is not None else None,
    }
