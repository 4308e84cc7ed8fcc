#!/bin/bash
# Upload a sweep's offline W&B runs (compute nodes without internet write them offline). Run where there is
# internet, e.g. the login node:  bash slurm/sync.sh runs/sweeps/<sweep name> [wandb sync options, e.g. --dry-run, -n 8]
# One `wandb sync` for all of them (it uploads several at a time, -n); a requeued task wrote several offline
# directories with the same run id, which wandb sync appends to one W&B run in order of start time.
set -euo pipefail
dir="${1:?usage: slurm/sync.sh <sweep dir> [wandb sync options]}"
shift
mapfile -d '' runs < <(find "$dir" -type d -name 'offline-run-*' -print0 | sort -z)
if [ "${#runs[@]}" -eq 0 ]; then
  echo "no offline W&B run under $dir" >&2
  exit 1
fi
wandb sync "$@" "${runs[@]}"
