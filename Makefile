PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench bench-steps bench-runs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/nearmiss demo

# The suite on every core, a test file to a worker: a file's shared fixtures (a long history,
# a deployment run many times) are built once.
test: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n auto --dist loadfile

# bench: both benchmarks, one after the other (never in parallel: they time each other);
# bench-steps: the heavy steps alone; bench-runs: whole `nearmiss run`s.
bench: $(VENV)/.installed-test
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/run.py

bench-steps: $(VENV)/.installed-test
	$(BIN)/python bench/pipeline.py

bench-runs: $(VENV)/.installed-test
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) demo-output build *.egg-info .pytest_cache .ruff_cache .hypothesis
