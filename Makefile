PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test bench fuzz chaos lint clean helia chromium

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test,workers]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m node.demo

HELIA_STAMP := tests/helia/node_modules/.installed

# A real Helia peer (npm, versions pinned in tests/helia/package-lock.json) for the interop tests
helia: $(HELIA_STAMP)

$(HELIA_STAMP): tests/helia/package.json tests/helia/package-lock.json
	cd tests/helia && npm ci --ignore-scripts --no-audit --no-fund
	touch $(HELIA_STAMP)

# Debian's Chromium for the dashboard's browser test (Playwright drives it; never `playwright install`)
chromium:
	@command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium) \
		|| echo "chromium could not be installed; tests/test_dashboard_browser.py will skip"

test: $(STAMP) $(HELIA_STAMP) chromium
	$(VENV)/bin/ruff check node runtime p2p consensus tests bench
	$(VENV)/bin/mypy runtime consensus node p2p
	$(PY) -m pytest -q -p no:cacheprovider --durations=25 tests

bench: $(STAMP)
	$(PY) -m bench.run_all

# long fuzz campaign against a real dev node: >= 100,000 inputs per surface, 40 minutes at most
fuzz: $(STAMP)
	$(PY) -m bench.fuzz

# finality under faults: 10,000 model-checker schedules, then 4 real nodes through fault proxies (~10 min)
chaos: $(STAMP)
	$(PY) -m bench.chaos

lint: $(STAMP)
	$(VENV)/bin/ruff check node runtime p2p consensus tests bench
	$(VENV)/bin/mypy runtime consensus node p2p

clean:
	rm -rf $(VENV) build *.egg-info
