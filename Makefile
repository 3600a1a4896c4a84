# Two commands set everything up: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PACKAGES := -e 'shared[embedded]' -e services/customer -e services/sales -e services/support -e services/scoring -e services/marketing -e services/console

.PHONY: install run test test-faults lint format docs docs-check bench clean

$(STAMP): shared/pyproject.toml services/*/pyproject.toml requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(PACKAGES) -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/crm run

# pytest exits 5 when it collected no test: a run with no tests is not green.
test: install
	$(BIN)/pytest; status=$$?; if [ $$status -eq 5 ]; then echo "pytest ran no tests"; exit 1; fi; exit $$status

# The fault-injection suite alone (make test runs it too): kills and restarts the servers and the services.
test-faults: install
	$(BIN)/pytest tests/faults

lint: install
	$(BIN)/ruff check shared services tests benchmarks
	$(BIN)/ruff format --check shared services tests benchmarks
	$(BIN)/mypy shared/src services/*/src

format: install
	$(BIN)/ruff format shared services tests benchmarks
	$(BIN)/ruff check --fix shared services tests benchmarks

# The whole platform on the CDNOW log; a quick look: make bench BENCH_ARGS="--orders 1500".
bench: install
	$(BIN)/python benchmarks/platform_benchmark.py $(BENCH_ARGS)

docs: install
	$(BIN)/crm docs

docs-check: install
	$(BIN)/crm docs --check

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache
