# Two commands matter: `make demo` and `make test`. Both install what they need first.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := $(PYTHON) -m uv
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home

.PHONY: install browser faketime postgres demo test ui bench lint admin sandbox

install:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv==$(UV_VERSION)"
	@$(UV) sync --frozen --quiet
	@mkdir -p "$(DAGSTER_HOME)"

demo: install
	$(UV) run --frozen cliniko-reviews demo

# The dashboard's browser tests drive Debian's chromium, never a downloaded browser (CI runs as root).
browser:
	@test -x /usr/bin/chromium || { apt-get update -qq >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The fake-clock tests (tests/fakeclock.py) preload Debian's libfaketime and compile a small C shim with gcc.
FAKETIME_LIB = /usr/lib/$(shell gcc -print-multiarch 2>/dev/null)/faketime/libfaketime.so.1
faketime:
	@test -e $(FAKETIME_LIB) && command -v gcc >/dev/null || { apt-get update -qq >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime gcc libc6-dev >/dev/null; }

# The PostgreSQL tests (tests/postgres_server.py) start throwaway clusters of Debian's server.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

test: install browser faketime postgres
	$(UV) run --frozen pytest

ui: install
	$(UV) run --frozen cliniko-reviews ui

admin: install
	$(UV) run --frozen cliniko-reviews admin

sandbox: install
	$(UV) run --frozen cliniko-reviews sandbox

bench: install
	$(UV) run --frozen --group bench python -m benchmarks

lint: install
	$(UV) run --frozen ruff check pipeline tests benchmarks
	$(UV) run --frozen ruff format --check pipeline tests benchmarks
