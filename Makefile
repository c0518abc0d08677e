# prow.build_cluster: developer entry points. See README.md and docs/.
#
#   make setup          .venv with everything pinned, the collection linked for FQCNs, the sandbox binary,
#                       the pinned external files (CRDs, Prow manifests) from the Go module proxy
#   make test           lint -> sanity -> units -> integration -> molecule (what CI runs)
#   make demo           onboarding against the local sandbox
#   make sandbox        start the local sandbox (docs/sandbox.md); make sandbox-down stops it
#   make bench          benchmarks (not tests)
#   make chaos          issue #16's faults and kills over whole onboardings (long; not in make test)

SHELL       := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON      ?= python3
VENV        := .venv
BIN         := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export SANDBOX_DIR ?= $(CURDIR)/.sandbox
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# The collection as ansible sees it from a checkout (see ansible.cfg).
COLLECTION_LINK := $(VENV)/collections/ansible_collections/prow/build_cluster
STAMP       := $(VENV)/.setup-stamp
PYTEST      := $(BIN)/pytest

.PHONY: help setup test lint sanity units integration molecule chaos demo sandbox sandbox-down bench build clean constraints

help:
	@sed -n 's/^#   //p' Makefile

# ---------------------------------------------------------------- setup
$(STAMP): requirements.txt requirements-dev.txt constraints.txt sandbox/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e sandbox
	touch $@

setup: $(STAMP)
	mkdir -p $(dir $(COLLECTION_LINK))
	ln -sfn $(CURDIR) $(COLLECTION_LINK)
	go version >/dev/null || { echo "setup: the sandbox needs a Go toolchain (go 1.25+) on PATH" >&2; exit 1; }
	$(BIN)/prow-sandbox build
	$(BIN)/prow-sandbox assets

# ---------------------------------------------------------------- checks
test: lint sanity units integration molecule

lint: setup
	$(BIN)/ansible-lint --profile production

# ansible-test needs an ansible_collections/<ns>/<name> tree, and skips files git
# ignores: sanity runs on exactly what ships, the tarball installed into a scratch
# tree outside the checkout. It builds its own venvs per test from PyPI; the pip
# bootstrap it would download from ci-files.testing.ansible.com (unreachable here)
# is replaced by scripts/get_pip_offline.py.
SANITY_TREE := $(or $(TMPDIR),/tmp)/prow-build-cluster-sanity
sanity: build
	mkdir -p $(HOME)/.ansible/test/cache
	cp scripts/get_pip_offline.py $(HOME)/.ansible/test/cache/get_pip_24_2.py
	rm -rf $(SANITY_TREE)
	$(BIN)/ansible-galaxy collection install --force --no-deps -p $(SANITY_TREE) build/prow-build_cluster-*.tar.gz >/dev/null
	cd $(SANITY_TREE)/ansible_collections/prow/build_cluster && \
	  $(BIN)/ansible-test sanity --requirements --python 3.11 --color no $(SANITY_ARGS)

units: setup
	$(PYTEST) tests/unit

# Two runs: each tree has its own conftest.py, and test modules import helpers from it.
integration: setup
	$(PYTEST) sandbox/tests
	$(PYTEST) tests/integration -m "not chaos"

# Faults (429, 503, etag races, answers lost after the write) and SIGKILLs over whole onboardings,
# each followed by a converging re-run and a no-op run: about 5 minutes on 2 idle cores (14 shared with other work).
chaos: setup
	$(PYTEST) -m chaos tests/integration/test_chaos.py --durations=0

# Every scenario under molecule/ (delegated driver against the local sandbox).
molecule: setup
	@if ls molecule/*/molecule.yml >/dev/null 2>&1; then $(BIN)/molecule test --all; \
	 else echo "molecule: no scenarios yet (they come with the roles)"; fi

build: setup
	rm -rf build/*.tar.gz && mkdir -p build
	$(BIN)/ansible-galaxy collection build --force --output-path build .

# ---------------------------------------------------------------- sandbox
sandbox: setup
	$(BIN)/prow-sandbox up

sandbox-down:
	@if [ -x $(BIN)/prow-sandbox ]; then $(BIN)/prow-sandbox down; fi

demo: setup
	scripts/demo.sh

bench: setup
	$(BIN)/prow-sandbox bench-kube
	$(BIN)/prow-sandbox bench

clean: sandbox-down
	rm -rf build tests/output .pytest_cache

# Regenerate the full pin set after changing requirements*.txt.
constraints:
	rm -rf build/constraints-venv && $(PYTHON) -m venv build/constraints-venv
	build/constraints-venv/bin/pip install --quiet -r requirements-dev.txt
	{ echo "# Full transitive pin set for .venv (pip freeze of requirements-dev.txt on Python 3.11)."; \
	  echo "# Regenerate: make constraints"; \
	  build/constraints-venv/bin/pip freeze --exclude-editable; } > constraints.txt
	rm -rf build/constraints-venv
