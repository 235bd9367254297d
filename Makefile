# Yutang — two commands on a fresh machine with Python 3.11: `make demo`, `make test`.

PYTHON_BIN ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
YUTANG_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/test
PYTEST_ARGS ?=
# Two test processes: the suite is CPU-bound and CI machines have two cores.
PYTEST_WORKERS ?= 2

export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: demo test test-sqlite test-postgres lint bench bench-quick vendor messages clean

$(STAMP): pyproject.toml
	@$(PYTHON_BIN) -c 'import sys; assert sys.version_info >= (3, 11), "Yutang needs Python 3.11 or newer"'
	test -x $(PY) || $(PYTHON_BIN) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $@

# Build (or reuse; FRESH=1 starts over) a simulated year of the sample brand on SQLite and
# serve the console on http://127.0.0.1:8000.
demo: $(STAMP)
	$(VENV)/bin/yutang demo $(if $(FRESH),--fresh,)

# The whole suite, once on SQLite and once on PostgreSQL.
test: $(STAMP)
	$(MAKE) --no-print-directory test-sqlite
	$(MAKE) --no-print-directory test-postgres

test-sqlite: $(STAMP)
	@echo "== tests on SQLite =="
	YUTANG_DATABASE_URL= $(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

test-postgres: $(STAMP)
	@echo "== tests on PostgreSQL ($(YUTANG_TEST_POSTGRES_URL)) =="
	YUTANG_DATABASE_URL=$(YUTANG_TEST_POSTGRES_URL) $(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy yutang tests
	bash scripts/vendor.sh --check

bench: $(STAMP)
	@if ls bench/*.py >/dev/null 2>&1; then \
		for b in bench/*.py; do echo "== $$b =="; $(PY) $$b || exit 1; done; \
	else echo "No benchmarks yet: they arrive with the issues that set performance goals."; fi

# Every benchmark at a small size (minutes, not hours): checks that each runs end to end and
# prints its figures against its in-run baseline. The issues' sizes are `make bench`.
bench-quick: $(STAMP)
	$(PY) bench/ingest.py --events 20000
	$(PY) bench/import.py --rows 2000
	$(PY) bench/routing.py --adds 1000
	$(PY) bench/delivery.py --scale 0.01
	$(PY) bench/journeys.py --enrollments 2000 --baseline 500
	$(PY) bench/segments.py --scale 0.01 --repeat 1
	$(PY) bench/analytics.py --contacts 3000 --repeat 1
	$(PY) bench/simulate.py --scale 0.002 --days 30

# Re-fetch the vendored front-end files by exact version and verify their SHA-256.
vendor:
	bash scripts/vendor.sh

# Refresh and compile the console's translations (needs GNU gettext).
messages: $(STAMP)
	cd yutang && DJANGO_SETTINGS_MODULE=yutang.settings ../$(VENV)/bin/django-admin makemessages -l zh_Hans --ignore "static/*" --no-location
	cd yutang && ../$(VENV)/bin/django-admin compilemessages

clean:
	rm -rf $(VENV) var test-artifacts
