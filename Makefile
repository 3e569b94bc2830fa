# Two entry points that work on a fresh machine with Python 3.11 and pip:
#   make demo   set up, then train the `daer` preset on the built-in `shapes` data
#   make test   set up, then run the test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.daer-installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[dev,pretrained,search,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/daer train --preset daer --dataset shapes

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/ablation_table3.py
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
