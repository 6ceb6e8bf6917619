# The README's two commands are the contract: `make run` and `make test` on a fresh machine.
VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: run test bench bootstrap venv check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

bootstrap:
	bash scripts/bootstrap

run: $(STAMP)
	$(VENV)/bin/voicegw run

test: $(STAMP) bootstrap
	$(PY) -m pytest

bench: $(STAMP) bootstrap
	$(PY) scripts/bench/parser.py
	$(PY) scripts/bench/options_rate.py

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
