# Two commands do all the set-up on a fresh machine with Python 3.11+:
#   make run    start the gateway on its embedded PostgreSQL, with demo data
#               (make run-insurer: the same county beside a simulated insurer's core, in .data-insurer)
#   make test   run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run run-insurer test lint check clean

$(BIN)/.installed: pyproject.toml clients/python/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is needed, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ./clients/python -e '.[embedded,dev]'
	@touch $@

run: $(BIN)/.installed
	$(BIN)/medsettle serve --demo

run-insurer: $(BIN)/.installed
	$(BIN)/medsettle serve --demo --insurer-sim

# The suite in TEST_WORKERS processes, each with its own embedded PostgreSQL (0: in this process alone).
TEST_WORKERS ?= 2

test: $(BIN)/.installed
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .data .data-insurer
