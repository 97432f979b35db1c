# Two entry points: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# Keep TensorFlow's C++ logging off the terminal for every target.
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: venv demo test fuzz bench clean

venv: $(STAMP)

$(STAMP): constraints.txt setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/compressor demo --out runs/demo --overwrite

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q --durations=20

# The long fuzz run (FUZZING.md): FUZZ_EXAMPLES mutated inputs per target (5 targets), counts printed per target;
# one input per distinct failure is kept in runs/fuzz-failures. Its own --basetemp: other pytest runs cannot prune it.
FUZZ_EXAMPLES ?= 500
fuzz: $(STAMP)
	COMPRESSOR_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) COMPRESSOR_FUZZ_FAILURES=$(CURDIR)/runs/fuzz-failures \
		$(PY) -m pytest -q -s --basetemp=runs/fuzz-tmp tests/test_fuzz.py

bench: $(STAMP)
	$(PY) -m benchmarks.run

clean:
	rm -rf runs build dist *.egg-info
