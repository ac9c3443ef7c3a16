# `make test` works on a fresh Debian machine: it installs the system tools the tests use when they
# are missing, builds the virtual environment, installs the interop peers, then lints, type-checks
# and runs the whole suite.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# command:package pairs; a command already on PATH (however it was installed) is not reinstalled.
SYSTEM_TOOLS := mosquitto:mosquitto initdb:postgresql mbpoll:mbpoll tshark:tshark tcpdump:tcpdump \
                ip:iproute2 ethtool:ethtool socat:socat node:nodejs npm:npm strace:strace
# file:package pairs for what building the diode's C speedups needs (see setup.py).
BUILD_FILES := /usr/include/openssl/sha.h:libssl-dev
# Tests run in two processes (the machines have two cores); override with PYTEST_WORKERS=0 to debug.
PYTEST_WORKERS ?= 2

.PHONY: test test-external lint typecheck unit setup system-deps venv interop demo bench clean

test: setup lint typecheck unit

setup: system-deps venv interop

system-deps:
	@missing=""; for pair in $(SYSTEM_TOOLS); do cmd=$${pair%%:*}; pkg=$${pair#*:}; \
		PATH="$$PATH:/usr/sbin:/sbin:$$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tr '\n' ':')" \
		command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	for pair in $(BUILD_FILES); do [ -e "$${pair%%:*}" ] || missing="$$missing $${pair#*:}"; done; \
	command -v gcc >/dev/null 2>&1 || missing="$$missing gcc"; \
	$(PYTHON) -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
		|| missing="$$missing python3-dev"; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

venv: $(VENV)/.installed
$(VENV)/.installed: $(BIN)/python pyproject.toml setup.py $(wildcard src/otseam/diode/speedups/*)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

interop: tests/interop/node_modules/.installed
tests/interop/node_modules/.installed: tests/interop/package.json
	cd tests/interop && npm install --no-audit --no-fund --loglevel=error
	touch $@

lint: venv
	$(BIN)/ruff check src tests tests_external bench
	$(BIN)/ruff format --check src tests tests_external bench

typecheck: venv
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile

# Tests against public corpora kept outside the repository (SEAM_FIXTURES names their directory).
# A missing corpus is an error, never a skip.
test-external: setup
	@[ -n "$$SEAM_FIXTURES" ] || { echo "make test-external: set SEAM_FIXTURES to the directory of the public captures" >&2; exit 2; }
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile tests_external

demo: venv
	$(BIN)/seam demo

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) tests/interop/node_modules .mypy_cache .pytest_cache .ruff_cache
