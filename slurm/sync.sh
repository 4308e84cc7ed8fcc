#!/bin/bash
# Upload a sweep's offline W&B runs (compute nodes without internet write them offline). Run where there is
# internet, e.g. the login node:  bash slurm/sync.sh runs/sweeps/<sweep name> [wandb sync options, e.g. --dry-run]
# A requeued task wrote several offline directories with the same run id; syncing them in time order appends them
# to one W&B run.
set -euo pipefail
dir="${1:?usage: slurm/sync.sh <sweep dir> [wandb sync options]}"
shift
find "$dir" -type d -name 'offline-run-*' | sort | while read -r run; do
  wandb sync "$@" "$run"
done
