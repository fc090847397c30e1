# privatelink — set-up and test plumbing.
#
# On a fresh Debian machine, as root:
#   make demo   # installs what is missing, runs the end-to-end demo
#   make test   # installs test dependencies (and azure-cli, see `make az`), runs the whole suite
#
# Variables:
#   PYTHON       interpreter used to create .venv (default: python3 from PATH; needs >= 3.11)
#   PYTEST_ARGS  extra arguments for pytest (paths given here replace the default `tests`)
#   SERVE_ARGS   extra arguments for `privatelink serve`

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
VENV_BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The real azure-cli for `privatelink az` and tests/az, in its own venv: it pins
# azure-mgmt-* versions that differ from the test extras. Only `az` is put on PATH (a
# symlink in $(AZ_SHIM)), so the venv's python does not shadow the system one.
AZ_VERSION := 2.91.0
AZ_VENV := .venv-az
AZ_SHIM := $(AZ_VENV)/shim
AZ_STAMP := $(AZ_VENV)/.installed-$(AZ_VERSION)

PYTEST_ARGS ?=
SERVE_ARGS ?=

# Debian packages: PostgreSQL server (tests start a throwaway one), the
# dataplane tools, HTTPS basics, and site-to-site VPN: strongSwan's charon with
# swanctl, the standard plugins (openssl: the crypto our charon.conf loads; a
# Recommends only, so --no-install-recommends leaves it out) and the extra ones
# (kernel-libipsec: ESP in user space where the kernel has none), tcpdump (tests
# check the wire carries ESP), util-linux (unshare), chromium (the portal's browser tests,
# driven by Playwright: browsers cannot be downloaded here).
SYSTEM_PACKAGES := postgresql nftables iproute2 conntrack curl ca-certificates \
	charon-systemd strongswan-swanctl libstrongswan-standard-plugins \
	libcharon-extra-plugins tcpdump util-linux chromium
# What the data-plane benchmarks drive traffic with (bench/dataplane.py, bench/scale.py).
BENCH_PACKAGES := iperf3 wrk haproxy

# Directories that exist in a fresh clone (git keeps no empty directory).
LINT_PATHS = $(wildcard src tests bench)

.PHONY: help deps-system deps-bench venv az test check typecheck demo serve bench clean

help:
	@echo "make demo         install what is missing, run the private-link demo"
	@echo "make test         install test dependencies, run the whole suite (PYTEST_ARGS=...)"
	@echo "make deps-system  install missing Debian packages (root)"
	@echo "make deps-bench   also the benchmarks' traffic tools: $(BENCH_PACKAGES) (root)"
	@echo "make venv         create/update .venv with the package and its test extras"
	@echo "make az           install azure-cli $(AZ_VERSION) in $(AZ_VENV) (az: $(AZ_SHIM)/az)"
	@echo "make check        ruff format --check, ruff check, mypy src"
	@echo "make typecheck    mypy src"
	@echo "make serve        run 'privatelink serve' (SERVE_ARGS=...)"
	@echo "make bench        run the control-plane benchmark"
	@echo "make clean        remove .venv, build artefacts and caches"

deps-system:
	@missing=(); \
	for p in $(SYSTEM_PACKAGES); do \
	  dpkg -s "$$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$$p"); \
	done; \
	py="$$(command -v $(PYTHON) || true)"; \
	if [ -z "$$py" ]; then \
	  missing+=(python3 python3-venv); \
	else \
	  case "$$(readlink -f "$$py")" in \
	    /usr/bin/*) dpkg -s python3-venv 2>/dev/null | grep -q '^Status: install ok installed' \
	                  || missing+=(python3-venv) ;; \
	  esac; \
	fi; \
	if [ "$${#missing[@]}" -eq 0 ]; then \
	  echo "deps-system: all Debian packages present"; \
	  exit 0; \
	fi; \
	if [ "$$(id -u)" -ne 0 ]; then \
	  echo "deps-system: not root, skipping; missing Debian packages: $${missing[*]}"; \
	  echo "deps-system: install them with: sudo make deps-system"; \
	  exit 0; \
	fi; \
	echo "deps-system: installing $${missing[*]}"; \
	export DEBIAN_FRONTEND=noninteractive; \
	if [ ! -e /usr/sbin/policy-rc.d ]; then \
	  trap 'rm -f /usr/sbin/policy-rc.d' EXIT; \
	  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; \
	  chmod 755 /usr/sbin/policy-rc.d; \
	fi; \
	apt-get update -qq; \
	apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 "$${missing[@]}" >/dev/null; \
	echo "deps-system: done"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@v="$$($(PYTHON) -c 'import sys; print(".".join(map(str, sys.version_info[:3]))); sys.exit(sys.version_info < (3, 11))' 2>/dev/null)" || { \
	  echo "venv: python >= 3.11 is required; '$(PYTHON)' is $${v:-not found}" >&2; \
	  echo "venv: put a python3 >= 3.11 first on PATH, or: make PYTHON=/path/to/python3.11 ..." >&2; \
	  exit 1; }
	@if [ ! -x $(VENV_BIN)/python ]; then \
	  echo "venv: creating $(VENV) with $$($(PYTHON) --version 2>&1)"; \
	  $(PYTHON) -m venv $(VENV); \
	fi
	@echo "venv: installing privatelink[test] (editable)"
	@$(VENV_BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	@$(VENV_BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

az: $(AZ_STAMP)

# A few minutes the first time; re-runs only when AZ_VERSION changes.
$(AZ_STAMP):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null || { \
	  echo "az: azure-cli needs python >= 3.10; '$(PYTHON)' is not (make PYTHON=... az)" >&2; \
	  exit 1; }
	@if [ ! -x $(AZ_VENV)/bin/python ]; then \
	  echo "az: creating $(AZ_VENV) with $$($(PYTHON) --version 2>&1)"; \
	  $(PYTHON) -m venv $(AZ_VENV); \
	  echo '*' > $(AZ_VENV)/.gitignore; \
	fi
	@echo "az: installing azure-cli==$(AZ_VERSION) in $(AZ_VENV) (takes a few minutes)"
	@$(AZ_VENV)/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
	@$(AZ_VENV)/bin/python -m pip install -q --disable-pip-version-check 'azure-cli==$(AZ_VERSION)'
	@mkdir -p $(AZ_SHIM)
	@ln -sf ../bin/az $(AZ_SHIM)/az
	@rm -f $(AZ_VENV)/.installed-*
	@touch $@

# tests/az find `az` on PATH; the pinned one comes first. The whole suite runs as two
# lanes at once (CI has 2 cores): the az tier, about 40 % of the time and mostly az's
# own start-up in subprocesses, beside every other tier. Each line is tagged with its
# lane; the target fails when either lane fails. PYTEST_ARGS runs one pytest instead.
test: deps-system venv az
ifeq ($(strip $(PYTEST_ARGS)),)
	@export PATH="$(CURDIR)/$(AZ_SHIM):$$PATH"; \
	( $(VENV_BIN)/pytest tests/az 2>&1 | sed -u 's/^/[az] /' ) & az=$$!; \
	( $(VENV_BIN)/pytest tests --ignore=tests/az 2>&1 | sed -u 's/^/[rest] /' ) & rest=$$!; \
	status=0; wait $$rest || status=1; wait $$az || status=1; \
	echo "make test: $$( [ $$status = 0 ] && echo passed || echo FAILED ) (both lanes above)"; \
	exit $$status
else
	PATH="$(CURDIR)/$(AZ_SHIM):$$PATH" $(VENV_BIN)/pytest $(PYTEST_ARGS)
endif

# mypy is not part of `check` yet (src/ does not type-check cleanly while it is
# being written); run it with `make typecheck`.
check: venv
	$(VENV_BIN)/ruff format --check $(LINT_PATHS)
	$(VENV_BIN)/ruff check $(LINT_PATHS)
	$(VENV_BIN)/mypy src

typecheck: venv
	$(VENV_BIN)/mypy src

deps-bench:
	@$(MAKE) --no-print-directory deps-system SYSTEM_PACKAGES="$(SYSTEM_PACKAGES) $(BENCH_PACKAGES)"

demo: deps-system venv
	$(VENV_BIN)/python -m privatelink.demo

serve: venv
	$(VENV_BIN)/privatelink serve $(SERVE_ARGS)

bench: venv
	$(VENV_BIN)/python bench/control_plane.py

clean:
	rm -rf $(VENV) $(AZ_VENV) build dist .eggs src/*.egg-info *.egg-info \
	  .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage htmlcov
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
