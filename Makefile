# Quick start: `make demo` and `make test` set up .venv from nothing when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Dev set-up pins: torch's CPU build (on these machines from local disk) and TensorFlow's CPU build.
TORCH_PIN := torch==2.13.0
TF_PIN := tensorflow-cpu==2.21.0
# RETURNN itself, for the parity tests against its frontend (dm-tree is an import it needs).
RETURNN_PIN := returnn==1.20261022.211313 dm-tree==0.1.10

.PHONY: demo test lint docs bench clean g2p

$(STAMP): setup.py pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH_PIN)
	$(PY) -m pip install --quiet --disable-pip-version-check $(TF_PIN)
	$(PY) -m pip install --quiet --disable-pip-version-check $(RETURNN_PIN)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# The default label-smoothing comparison: figure and metrics in returnn_ls_out/ (compare.png, compare.json).
demo: $(STAMP)
	$(VENV)/bin/returnn-ls compare --out returnn_ls_out

# Grapheme-to-phoneme on the CMU Pronouncing Dictionary: train the attention model (label smoothing 0.1), beam
# search the test words; returnn_ls_out/g2p/test_hyps.tsv and report.json (PER, WER, NLL, ECE, seconds).
g2p: $(STAMP)
	$(PY) demos/g2p/run.py demos/g2p/attention.config --out returnn_ls_out/g2p

lint: $(STAMP)
	$(PY) -m ruff check returnn_ls frontend_backends tests demos docs setup.py

# The docs site (Sphinx, Markdown pages; warnings are errors) in docs/_build/html.
docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html

test: $(STAMP) lint docs
	$(PY) -m pytest -q -p no:cacheprovider tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache docs/_build
