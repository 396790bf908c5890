# driftd developer entry points. `make test` works on a fresh clone: it creates .venv,
# builds kube-apiserver + etcd once (cached in ~/.cache/driftd-sandbox), helm + sops once (cached in
# ~/.cache/driftd-tools) and runs everything.
# System packages (docker-registry, prometheus, prometheus-alertmanager, kubectl, Go >= 1.24
# for the kube build) are installed by .ci/run.
SHELL := /bin/bash
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCK := $(wildcard requirements.lock)
LINT_PATHS := $(wildcard driftd tests bench)
SANDBOX_DIR ?= .sandbox
PYTEST_ARGS ?=

.PHONY: test lint pytest system-deps builds kube-bins image tool-bins demo sandbox-up sandbox-down sandbox-status bench lock clean-venv

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if [ -f requirements.lock ]; then \
	  $(PY) -m pip install -q -c requirements.lock -e '.[dev]'; \
	else \
	  echo "make: requirements.lock missing; installing unpinned" >&2; \
	  $(PY) -m pip install -q -e '.[dev]'; \
	fi
	@touch $@

system-deps:
	@bash scripts/system-deps.sh

kube-bins:
	@bash tests/sandbox/build-kube.sh >/dev/null

# The container image from the Dockerfile (podman on mmdebstrap-made Debian bases, cached in
# ~/.cache/driftd-image; a rebuild with nothing changed takes seconds). tests/test_image.py runs it.
image: system-deps
	@bash scripts/build-image.sh >/dev/null

# helm and sops for the Helm and SOPS tests (DRIFTD_TOOLS_BIN=DIR uses existing binaries).
tool-bins:
	@bash tests/sandbox/build-tools.sh >/dev/null

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The heavy builds side by side: on a new machine the Go builds are CPU-bound while the image's
# Debian bases and its pip layer mostly wait on downloads, so overlapping them saves minutes.
builds: system-deps
	@$(MAKE) --no-print-directory -j3 kube-bins tool-bins image

pytest: system-deps $(STAMP) builds
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test: lint pytest

demo: system-deps $(STAMP) kube-bins
	$(PY) scripts/demo.py

sandbox-up: system-deps $(STAMP) kube-bins
	$(PY) -m tests.sandbox up $(SANDBOX_DIR)
	@echo "export DRIFTD_SANDBOX=$(abspath $(SANDBOX_DIR))"

sandbox-down: $(STAMP)
	$(PY) -m tests.sandbox down $(SANDBOX_DIR)

sandbox-status: $(STAMP)
	$(PY) -m tests.sandbox status $(SANDBOX_DIR)

bench: $(STAMP) kube-bins
	@if [ -d bench ]; then $(PY) -m bench $(BENCH_ARGS); else echo "make: no bench/ yet" >&2; exit 1; fi

# Re-resolve requirements.lock from pyproject.toml in a throw-away venv.
lock:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  $(PYTHON) -m venv "$$tmp/venv" && "$$tmp/venv/bin/pip" install -q '.[dev]' && \
	  { echo "# Pinned set resolved on Python $$("$$tmp/venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])'); aioboto3 pins aiobotocore which pins botocore/boto3, so they move together."; \
	    echo "# Regenerate: make lock"; \
	    "$$tmp/venv/bin/pip" freeze --exclude-editable | grep -v '^driftd[= @]'; } > requirements.lock.tmp && \
	  mv requirements.lock.tmp requirements.lock

clean-venv:
	rm -rf $(VENV)
