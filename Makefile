# Two entry points on a fresh clone: `make demo` and `make test` (CI runs `make test`).
VENV ?= .venv
PY := $(VENV)/bin/python
# Prefect runs offline and quietly (see ../shared/notes/prefect.md).
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW := ignore

.PHONY: demo test test-fast lint docs install bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# The CPU wheel of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,lint,docs]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/landcover demo

# CI runs this: lint first (ruff, mypy), the docs site built strictly, then the whole suite on three
# processes (pytest-xdist): a test file stays on one process (--dist loadfile), so module fixtures
# that run a pipeline once run once, and each process has its own Prefect home. Three on CI's two
# cores, because many tests wait on subprocesses and servers: 829 s with -n 3 against 988 s with
# -n 2 on a 2-core machine (one run each, 2026-12-06; the -n 2 run still had the shared scenes at
# 5 folds, so part of the gain is theirs).
test: $(VENV)/.installed lint docs
	PREFECT_HOME=$$(mktemp -d) $(PY) -m pytest -q -p no:cacheprovider -n 3 --dist loadfile --durations=15

# Unit tests only: no end-to-end run, no Prefect engine, no multi-second property search
# (the `e2e` and `heavy` markers, set in tests/conftest.py).
test-fast: $(VENV)/.installed
	PREFECT_HOME=$$(mktemp -d) $(PY) -m pytest -q -p no:cacheprovider -m "not e2e and not heavy" --durations=5

# ruff (lint) and mypy (types: pipeline and flows, the files pyproject lists); `pip install -e ".[lint]"` provides both.
lint: $(VENV)/.installed
	$(PY) -m ruff check pipeline flows bench tests
	$(PY) -m ruff format --check pipeline flows bench tests
	$(PY) -m mypy

# The documentation site into build/site/ (offline; --strict: a broken link or a page left out of
# the navigation fails).
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet

bench: $(VENV)/.installed
	$(VENV)/bin/landcover bench baselines
	$(VENV)/bin/landcover bench deep

clean:
	rm -rf reports/runs
