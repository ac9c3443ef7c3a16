# `make test` works on a fresh Debian machine: it installs the system tools the tests use when they
# are missing, builds the virtual environment, installs the interop peers, then lints, type-checks
# and runs the whole suite.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# command:package pairs; a command already on PATH (however it was installed) is not reinstalled.
SYSTEM_TOOLS := mosquitto:mosquitto initdb:postgresql mbpoll:mbpoll tshark:tshark tcpdump:tcpdump \
                ip:iproute2 ethtool:ethtool socat:socat node:nodejs npm:npm clang:clang \
                chromium:chromium strace:strace nats-server:nats-server
# file:package pairs for what building the diode's C speedups needs (see setup.py).
BUILD_FILES := /usr/include/openssl/evp.h:libssl-dev /usr/include/isa-l/erasure_code.h:libisal-dev \
               /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a:libclang-rt-14-dev
# Tests run in four processes on the two cores: the suite waits (servers starting, protocol timers, a
# two-minute link cut) more than it computes, about 380 CPU-seconds in 7.5 minutes with two workers and
# in under 4 with four (docs/testing.md). Override with PYTEST_WORKERS=0 to debug.
PYTEST_WORKERS ?= 4
# Each file whole to one worker (module-scoped servers start once), in the order the suite's own
# plugin gives them (tests/support/ordering.py: longest first); xdist would otherwise hand out the
# files with the most tests first, and a two-test file of two minutes last.
DIST := --dist loadfile --no-loadscope-reorder
# The suite starts hundreds of Python processes and rewrites every test module's asserts: with bytecode
# caching off (an environment may set this), each of them compiles its modules from source again.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: test coverage test-external lint typecheck unit stress setup system-deps venv interop console demo bench clean sanitize fuzz

# The checks run side by side, each one's output printed whole when it ends: the suite spends much of
# its time waiting (servers starting, protocol timers), and the static checks, the sanitizer run and
# the fuzzer's fixed 30 s fill that time instead of adding to it (docs/testing.md, where the time goes).
test: setup
	@$(MAKE) --no-print-directory -j5 --output-sync=target lint typecheck sanitize fuzz unit

setup: system-deps venv interop console

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

# The web console's third-party code (uPlot), from npm with its lockfile; served from console/node_modules.
console: console/node_modules/.installed
console/node_modules/.installed: console/package.json console/package-lock.json
	cd console && npm ci --no-audit --no-fund --loglevel=error
	touch $@

lint: venv
	$(BIN)/ruff check src tests tests_external bench
	$(BIN)/ruff format --check src tests tests_external bench

typecheck: venv
	$(BIN)/mypy

# COVERAGE=1 measures the package's line coverage (subprocesses such as `seam run` included) and reports
# it at the end; CI runs it so. Coverage's tracer on Python 3.11 costs the suite about 1.6x its CPU time
# (library code included: parsing YAML costs 3.7x under it), so a plain `make test` leaves it out.
COVERAGE ?=
COVERAGE_ARGS := $(if $(COVERAGE),--cov --cov-report=term)

# The slowest tests are listed at the end: where the time goes (docs/testing.md).
unit: setup
	$(BIN)/pytest -n $(PYTEST_WORKERS) $(DIST) $(COVERAGE_ARGS) --durations=20

coverage:
	@$(MAKE) --no-print-directory test COVERAGE=1

# The suite (or STRESS_TESTS) five times in a row beside one busy process per core: no test may depend
# on an idle machine (docs/testing.md).
STRESS_TESTS ?= tests
stress: setup
	$(BIN)/python -m tests.support.stress --runs 5 -- -n $(PYTEST_WORKERS) $(DIST) $(STRESS_TESTS)

# Tests against public corpora kept outside the repository (SEAM_FIXTURES names their directory).
# A missing corpus is an error, never a skip.
test-external: setup
	@[ -n "$$SEAM_FIXTURES" ] || { echo "make test-external: set SEAM_FIXTURES to the directory of the public captures" >&2; exit 2; }
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile tests_external

# The diode's C module under AddressSanitizer, UndefinedBehaviorSanitizer and LeakSanitizer (gcc): built
# aside, then the tests that drive its code run against it; any report fails. About 30 s of CPU.
SANITIZE_DIR := build/sanitize
SANITIZE_TESTS := tests/diode/test_speedups.py tests/diode/test_fec.py tests/diode/test_wire.py \
                  tests/diode/test_direct_encoding.py tests/diode/test_batching.py tests/core/test_columns.py

sanitize: venv
	rm -rf $(SANITIZE_DIR) && mkdir -p $(SANITIZE_DIR)/src
	CC=gcc SEAM_SANITIZE=1 $(BIN)/python setup.py -q build_ext --build-lib $(SANITIZE_DIR)/lib \
		--build-temp $(SANITIZE_DIR)/tmp
	cp -r src/otseam $(SANITIZE_DIR)/src/
	cp $(SANITIZE_DIR)/lib/otseam/diode/_speedups*.so $(SANITIZE_DIR)/src/otseam/diode/
	PYTHONPATH=$(SANITIZE_DIR)/src PYTHONMALLOC=malloc LD_PRELOAD=$$(gcc -print-file-name=libasan.so) \
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
		LSAN_OPTIONS=suppressions=$(CURDIR)/tests/diode/native/lsan.supp:print_suppressions=0 \
		UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		$(BIN)/python -m pytest -p no:cacheprovider -n 0 -q $(SANITIZE_TESTS)

# A coverage-guided fuzzer (libFuzzer, clang) over the C entry points that see network or disk bytes,
# with ASan and UBSan, for FUZZ_TIME seconds from the seed corpus of real datagrams in
# tests/diode/native/corpus; a crash, a sanitizer report or an unexpected exception fails it (the
# input is kept in build/fuzz/). See tests/diode/native/fuzz_speedups.c.
FUZZ_DIR := build/fuzz
FUZZ_TIME ?= 30

fuzz: venv
	mkdir -p $(FUZZ_DIR)/work
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
		-I"$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
		-Isrc/otseam/diode/speedups src/otseam/diode/speedups/*.c tests/diode/native/fuzz_speedups.c \
		-L"$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')" \
		-Wl,-rpath,"$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')" \
		-lpython$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_config_var("LDVERSION"))') \
		-lcrypto -lisal -o $(FUZZ_DIR)/fuzz_speedups
	PYTHONPATH=src:$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
		PYTHONMALLOC=malloc ASAN_OPTIONS=detect_leaks=0 $(FUZZ_DIR)/fuzz_speedups -max_total_time=$(FUZZ_TIME) \
		-rss_limit_mb=2048 -artifact_prefix=$(FUZZ_DIR)/ $(FUZZ_DIR)/work tests/diode/native/corpus

# The demo needs the runtime with every extra, not the test tools: a fresh clone reaches a working
# console sooner (`make test` later adds the rest to the same environment).
demo: $(VENV)/.demo-installed console
	$(BIN)/seam demo
$(VENV)/.demo-installed: $(BIN)/python pyproject.toml setup.py $(wildcard src/otseam/diode/speedups/*)
	$(BIN)/pip install -q -e '.[all]'
	touch $@

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) tests/interop/node_modules console/node_modules .mypy_cache .pytest_cache .ruff_cache
