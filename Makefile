# Two entry points: `make demo` (the CPU headline run) and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
# CPU wheel by default; GPU users: `make TORCH="torch" demo` (or any CUDA build) before the first run.
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
CONFIG ?= configs/noisy.yaml

.PHONY: demo test bench clean-venv

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

demo: $(BIN)/.installed
	$(BIN)/python main.py fit --config $(CONFIG)
	$(BIN)/python -m reports --latest runs

test: $(BIN)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/throughput.py --config paper
	$(BIN)/python benchmarks/throughput.py --config cpu
	$(BIN)/python benchmarks/callback_overhead.py
	$(BIN)/python benchmarks/report_cost.py

clean-venv:
	rm -rf $(VENV)
