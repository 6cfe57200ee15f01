# Everything a fresh machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config.yaml
SRC := $(wildcard service webhooks tests bench client)
TYPED := $(wildcard service webhooks tests client/acceptd_client client/tests)

.PHONY: install install-dev run test test-client lint format chaos fuzz screenshots peers bench bench-scale soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The client (client/, its own distribution acceptd-client) is installed beside the service.
$(VENV)/.installed: pyproject.toml client/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e . -e ./client
	touch $@

# luacheck (Debian's lua-check) lints the Lua scripts in the suite; installed where we can
# (root with apt-get). CI needs it: tests/test_lua_lint.py fails there without it.
$(VENV)/.installed-dev: pyproject.toml client/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]' -e './client[test]'
	@command -v luacheck >/dev/null || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null \
	  || apt-get install -y -q lua-check >/dev/null 2>&1 \
	  || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q lua-check >/dev/null 2>&1; } \
	  || echo "lua-check could not be installed: the Lua lint test will be skipped"
	touch $(VENV)/.installed $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/acceptd serve --config $(CONFIG)

lint: install-dev
	$(BIN)/ruff check $(SRC)
	$(BIN)/ruff format --check $(SRC)
	$(BIN)/mypy $(TYPED)

format: install-dev
	$(BIN)/ruff check --fix $(SRC)
	$(BIN)/ruff format $(SRC)

test: lint
	$(BIN)/python -m pytest -q

# The client's own tests, which need nothing but the client (no service, no Redis).
test-client: install-dev
	$(BIN)/python -m pytest -q client/tests

# The chaos test at length (the suite runs one round): faults under steady load, figures printed.
CHAOS_ROUNDS ?= 5
CHAOS_RATE ?= 20
chaos: install-dev
	CHAOS_ROUNDS=$(CHAOS_ROUNDS) CHAOS_RATE=$(CHAOS_RATE) $(BIN)/python -m pytest -q -s -m chaos tests/faults/test_chaos.py

# The README's console screenshots, taken by the suite's browser tests.
screenshots: install-dev
	ACCEPTD_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/http/test_console_browser.py

# A longer fuzzing run than the suite's (tests/http/test_fuzz.py): examples per operation and
# generation mode (FUZZ_EXAMPLES), on the suite's private Redis.
FUZZ_EXAMPLES ?= 200
fuzz: install-dev
	ACCEPTD_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) ACCEPTD_FUZZ_TIMEOUT=7200 \
	  $(BIN)/python -m pytest -q tests/http/test_fuzz.py

# The bench's contenders, each in a venv of its own under bench/.peers/ (pinned: the versions
# of the README's table), and wrk, the HTTP load client, from Debian's packages when we are
# root (without it the bench falls back to its own, slower aiohttp client).
PEERS := arq saq dramatiq
PEER_SPEC_arq := arq==0.28.0 hiredis
PEER_SPEC_saq := saq[redis,hiredis]==0.26.4 typing_extensions
PEER_SPEC_dramatiq := dramatiq[redis]==2.2.1 hiredis

# A stamp holds the spec it installed: a change elsewhere in this Makefile does not reinstall
# (that would cost `make bench` a minute or more), a changed pin does.
bench/.peers/%/.installed: Makefile
	@if [ "$$(cat $@ 2>/dev/null)" = '$(PEER_SPEC_$*)' ]; then touch $@; else \
	  set -x && $(PYTHON) -m venv bench/.peers/$* \
	  && bench/.peers/$*/bin/python -m pip install -q --disable-pip-version-check $(foreach s,$(PEER_SPEC_$*),'$(s)') \
	  && echo '$(PEER_SPEC_$*)' > $@; fi

# BullMQ (Node), the anchor row: npm installs it, pinned, with ioredis (its usual driver) into
# bench/.peers/bullmq; skipped with a note when node or npm is missing (the bench then says so).
BULLMQ_SPEC := bullmq@6.7.0 ioredis@5.11.1

bench/.peers/bullmq/.installed: Makefile
	@if [ "$$(cat $@ 2>/dev/null)" = '$(BULLMQ_SPEC)' ]; then touch $@; \
	elif command -v npm >/dev/null && command -v node >/dev/null; then \
	  mkdir -p bench/.peers/bullmq \
	  && npm install --prefix bench/.peers/bullmq --no-audit --no-fund --silent $(BULLMQ_SPEC) \
	  && echo '$(BULLMQ_SPEC)' > $@; \
	else echo "node/npm missing: the bench skips BullMQ's rows"; fi

peers: $(PEERS:%=bench/.peers/%/.installed) bench/.peers/bullmq/.installed
	@command -v wrk >/dev/null || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null \
	  || apt-get install -y -q wrk >/dev/null 2>&1 \
	  || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q wrk >/dev/null 2>&1; } \
	  || echo "wrk could not be installed: the bench will use its aiohttp client"

# The whole comparison in one invocation, within 15 minutes (--budget 840 s: 3 interleaved
# rounds of the headline, everything else once or more). BENCH_ARGS passes more, e.g. --quick.
BENCH_ARGS ?=
bench: install-dev peers
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Redis memory per queued request and the status monitor at a depth of 1,000,000 (about two
# minutes of filling), apart from `make bench` (which measures both at 100,000); into
# bench/results-scale.md.
bench-scale: install-dev
	$(BIN)/python bench/run.py --only scale

# Sustained load (issue 17 item 4), apart from `make bench`: its own stack, SOAK_MINUTES of
# paced submits at 70 % of the peak it measures first, a row a minute; the table and verdicts
# go to bench/results-soak.md (exit 1 on a MISS). SOAK_ARGS passes more, e.g. "--rate 1500".
SOAK_MINUTES ?= 10
SOAK_ARGS ?=
soak: install-dev
	$(BIN)/python bench/soak.py --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
