#!/usr/bin/env bash
# The wheels the GPU machine's image lacks (benchmarks/gpu_image/packages.txt), for its Python 3.12, into .whl/
# (ignored by git): jsonargparse with its signature extras. wandb and datasets are not needed there: the benchmark
# runs log nothing to W&B and never build a dataset. Run here, where pip reaches PyPI; gpu.sh installs them there.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  "jsonargparse==4.53.0" "docstring_parser==0.18.0" "typeshed_client==2.15.0"
ls -1 .whl
