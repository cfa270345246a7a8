# make train: set up and run the main job; make test: set up and run the tests.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup train test bench clean
setup: $(VENV)/.installed

# torch first, pinned to the CPU wheel: an open range would pull a multi-GB CUDA build
$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

train: setup
	$(BIN)/python scripts/bench_rnn.py --cells lstm --sizes C1 --threads 2 --repeats 5

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python scripts/bench_rnn.py --json bench_rnn.json

clean:
	rm -rf $(VENV) *.egg-info
