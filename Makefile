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

ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: $(STAMP)
	cd notebooks && ../$(BIN)/jupyter lab $(ROOT_FLAG) 00-start-here.ipynb

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "RPC Lab needs Python 3.10 or newer; this is " + sys.version.split()[0])'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# uv installs in a fraction of pip's time; plain pip is the fallback.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv || true
	if $(BIN)/python -m uv --version >/dev/null 2>&1; then \
	  $(BIN)/python -m uv pip install --quiet --python $(BIN)/python -e '.[$(EXTRAS)]'; \
	else \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'; \
	fi
	touch $(STAMP)

doctor: $(STAMP)
	$(BIN)/rpclab doctor

bench: $(STAMP)
	$(BIN)/rpclab bench

nav: $(STAMP)
	$(BIN)/python tools/nav.py

clean:
	rm -rf $(VENV) .pytest_cache artifacts
