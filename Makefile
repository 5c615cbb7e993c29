PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test bench lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m node.demo

test: $(STAMP)
	$(VENV)/bin/ruff check node runtime p2p consensus tests bench
	$(VENV)/bin/mypy runtime consensus node p2p
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: $(STAMP)
	$(PY) -m bench.run_all

lint: $(STAMP)
	$(VENV)/bin/ruff check node runtime p2p consensus tests bench
	$(VENV)/bin/mypy runtime consensus node p2p

clean:
	rm -rf $(VENV) build *.egg-info
