# Set-up and everyday commands. Every target builds .venv on first use and
# reinstalls only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# PyTorch's own venv, for the parity checks and the speed comparison (see `parity`).
TORCH_VENV := .venv-torch
DATA := data/synthetic
# Quiet TensorFlow's C++ start-up chatter; errors still show.
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test lint format docs bench parity tensorboard clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(VENV)/.installed $@

# The manifest is written last, so an interrupted generation is redone.
$(DATA)/synthetic.json: | $(VENV)/.installed
	$(BIN)/siamese-cd synth $(DATA) --train 1000 --val 100 --test 200 --size 64 --seed 0

# A finished demo is kept (train refuses to overwrite it); a killed one resumes.
demo: $(VENV)/.installed $(DATA)/synthetic.json
	@if [ -f logs/demo/model.keras ] && [ ! -d logs/demo/backup ]; then \
		echo "logs/demo holds the finished demo run; rm -r logs/demo to train it again"; \
	else \
		$(BIN)/siamese-cd train $(DATA) --epochs 12 --batch-size 16 \
			--logdir logs/demo --out logs/demo/model.keras; \
	fi
	@echo
	@echo "See the run:  $(BIN)/tensorboard --logdir logs   (or: make tensorboard)"

# One test process per core: run one at a time, the tests keep about one core busy (start-up,
# subprocesses, small graphs). worksteal balances them to the end; the slowest are listed.
test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -n auto --dist worksteal --durations=15

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

$(VENV)/.installed-docs: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[docs]"
	touch $(VENV)/.installed $@

# The site, into site/. --strict: a broken link or reference, or a docstring griffe cannot
# read, fails the build. NO_MKDOCS_2_WARNING silences Material's banner about MkDocs 2.
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The exported formats' converters and runtimes, for the export rows of `make bench`.
$(VENV)/.installed-export: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[export]"
	touch $(VENV)/.installed $@

# The last script times the library against the PyTorch reference, so it needs .venv-torch.
bench: $(VENV)/.installed-export $(TORCH_VENV)/.installed
	$(BIN)/python benchmarks/train_step.py
	$(BIN)/python benchmarks/export_speed.py
	$(TORCH_VENV)/bin/python benchmarks/speed_vs_reference.py

# Parity with the published PyTorch code (docs/model.md). PyTorch lives in its own venv: the
# library and its tests never need it. The pin is the CPU build; plain `torch` would pull a
# multi-GB CUDA one.
$(TORCH_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/pip install --quiet -e . torch==2.13.0
	touch $@

parity: $(TORCH_VENV)/.installed
	$(TORCH_VENV)/bin/python benchmarks/reference_parity.py

tensorboard: $(VENV)/.installed
	$(BIN)/tensorboard --logdir logs

clean:
	rm -rf $(VENV) $(TORCH_VENV) build site *.egg-info .pytest_cache .ruff_cache
