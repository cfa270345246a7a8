# make train: set up and run the main job; make test: set up and run the tests.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# the benchmark files beside the project (the development layout), unless SEQKIT_DATA is set
export SEQKIT_DATA ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)

.PHONY: setup train test bench clean
setup: $(VENV)/.installed

# torch first, pinned to the CPU wheel: an open range would pull a multi-GB CUDA build
$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

train: setup
	$(BIN)/python train.py task=music

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/seqkit bench rnn --json bench_rnn.json

clean:
	rm -rf $(VENV) *.egg-info
