# The two commands of the README:
#   make run   installs into .venv and runs the main job on the built-in default model and data
#   make test  installs into .venv (with the dev extra) and runs the whole test suite
VENV ?= .venv
PYTHON ?= python3
# The CPU wheel on CI-like machines. GPU users: TORCH_SPEC='torch>=2.6' make install
TORCH_SPEC ?= torch==2.13.0
CONFIG ?= configs/default.yaml
BIN := $(VENV)/bin

.PHONY: install run demo train test lint clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/sftune assets install
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/sftune sweep --config $(CONFIG)

demo: install
	$(BIN)/sftune demo

train: install
	$(BIN)/sftune train --config $(CONFIG)

lint: install
	$(BIN)/ruff check .

# The tests also cover the optional extras (MLflow, W&B, datasets).
$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev,bench,mlflow,wandb,datasets]'
	touch $@

test: install $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
