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

.PHONY: demo test bench clean-venv

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(BIN)/.installed-test: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

demo: $(BIN)/.installed
	$(BIN)/python main.py fit --config $(CONFIG)

test: $(BIN)/.installed-test
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

bench: $(BIN)/.installed-test
	$(BIN)/python benchmarks/throughput.py --config paper
	$(BIN)/python benchmarks/throughput.py --config cpu
	$(BIN)/python benchmarks/callback_overhead.py
	$(BIN)/python benchmarks/report_cost.py

clean-venv:
	rm -rf $(VENV)
