"""Read back what a W&B run wrote to its ``.wandb`` file (offline runs), so tests assert on real logged data.

The file is a LevelDB-style log (32 KiB blocks, 7-byte record headers) of ``wandb_internal_pb2.Record``
protobufs behind a 7-byte ``:W&B`` header; wandb >= 0.19 no longer ships a Python reader for it.
"""
from __future__ import annotations

import glob
import json
import os
import struct

from wandb.proto import wandb_internal_pb2

BLOCK, HEADER = 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: str):
    data = open(path, "rb").read()
    assert data[:4] == b":W&B", f"{path} is not a .wandb file"
    pos, chunks = HEADER, []
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if length == 0 and kind == 0:
            break
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind in (FULL, FIRST):
            chunks = [chunk]
        else:
            chunks.append(chunk)
        if kind in (FULL, LAST):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(b"".join(chunks))
            yield rec


def run_file(run_dir: str) -> str:
    files = glob.glob(os.path.join(run_dir, "wandb", "offline-run-*", "*.wandb"))
    assert len(files) == 1, f"expected one offline W&B run in {run_dir}, found {files}"
    return files[0]


def read_run(run_dir: str) -> dict:
    """{'run': RunRecord, 'history': [ {key: value} ... ], 'config': {...}} of the run in ``run_dir``."""
    out = {"run": None, "history": [], "config": {}}
    for rec in records(run_file(run_dir)):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out["run"] = rec.run
        elif kind == "history":
            out["history"].append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "config":
            out["config"].update({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.config.update})
    return out
