# driftwatch: one command each for the demo, the tests, and the benchmarks.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test lint unit integration bench clean

$(BIN)/driftwatch: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

demo: $(BIN)/driftwatch           ## the embedded default: broker + drifting producer + webhook receiver + daemon
	$(BIN)/driftwatch demo $(ARGS)

test: $(BIN)/driftwatch lint      ## everything CI runs: lint, types, unit and integration tests
	scripts/ensure-tools.sh
	$(BIN)/pytest -q

lint: $(BIN)/driftwatch
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy

unit: $(BIN)/driftwatch
	scripts/ensure-tools.sh
	$(BIN)/pytest -q tests/unit

integration: $(BIN)/driftwatch
	scripts/ensure-tools.sh
	$(BIN)/pytest -q tests/integration

bench: $(BIN)/driftwatch          ## prints the benchmark table (numbers in README.md)
	@# Quix Streams is the benchmark's reference app only. It pins confluent-kafka<2.13 but
	@# runs on 2.16 (checked here), which driftwatch[fast] needs: reinstall 2.16 after it.
	$(BIN)/pip install --quiet quixstreams '.[bench]'
	$(BIN)/pip install --quiet 'confluent-kafka>=2.16'
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
