# Two entry points: `make demo` (the platform with a demo community) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint test-deps screenshots clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# Apache ECharts for the console's charts, from the npm registry (version and SHA-512 pinned).
ECHARTS := console/static/echarts.min.js
$(ECHARTS): $(BIN)/.installed console/assets.py
	$(BIN)/python -m console.assets
	touch $@

# The demo runs without the charts when npm cannot fetch them (the elder page says so).
demo: $(BIN)/.installed
	@$(BIN)/python -m console.assets || echo "warning: no npm, so the elder page's charts are off (install Node.js and run make again)"
	$(BIN)/eldercare demo

test-deps: $(BIN)/.installed $(ECHARTS)
	bash tests/setup.sh

lint: $(BIN)/.installed
	$(BIN)/ruff check foundation eldercare devices ingest detectors dispatcher console simulators tests
	$(BIN)/mypy foundation eldercare devices ingest detectors dispatcher console simulators
	$(BIN)/lint-imports

test: test-deps lint
	$(BIN)/pytest -q

# The console screenshots in docs/screenshots/, taken deliberately (tests write test-artifacts/).
screenshots: test-deps
	DOCS_SCREENSHOTS=1 $(BIN)/pytest -q tests/test_console_browser.py tests/test_emergency_browser.py \
	  tests/test_family_page.py tests/test_reports.py tests/test_console_records.py \
	  tests/test_stats_page.py

clean:
	rm -rf $(VENV) .cache .eldercare test-artifacts
