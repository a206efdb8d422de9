# RPC Lab: `make lab` to learn, `make test` to check everything.
# Both create .venv and install into it the first time, and again only when
# pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EXTRAS ?= test
PYTEST_ARGS ?=

.PHONY: lab test install bench doctor nav clean

lab: $(STAMP)
	$(BIN)/jupyter lab --ServerApp.root_dir=notebooks 00-start-here.ipynb

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "RPC Lab needs Python 3.10 or newer; this is " + sys.version.split()[0])'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

doctor: $(STAMP)
	$(BIN)/rpclab doctor

bench: $(STAMP)
	$(BIN)/rpclab bench

nav: $(STAMP)
	$(BIN)/python tools/nav.py

clean:
	rm -rf $(VENV) .pytest_cache artifacts
