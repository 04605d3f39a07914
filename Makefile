# Two commands on a fresh machine: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
ARGS ?=

.PHONY: run test lint unit integration system-deps bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed pyproject.toml
	$(PIP) install -q -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/berth serve $(ARGS)

system-deps:
	bash scripts/install-system-deps.sh

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check berth tests bench
	$(VENV)/bin/mypy berth

test: system-deps $(VENV)/.test-installed lint
	$(VENV)/bin/pytest -q -rs -p no:cacheprovider --durations=25 $(ARGS)

unit: $(VENV)/.test-installed
	$(VENV)/bin/pytest -q tests/unit tests/contract $(ARGS)

integration: system-deps $(VENV)/.test-installed
	$(VENV)/bin/pytest -q tests/integration $(ARGS)

bench: system-deps $(VENV)/.test-installed
	$(PY) bench/run.py $(ARGS)

clean:
	rm -rf $(VENV) berth-data .pytest_cache .mypy_cache .ruff_cache
