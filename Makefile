# RPC Lab: `make lab` to learn, `make test` to check everything.
# Both create .venv and install into it the first time, and again only when
# pyproject.toml changes. A learner's install (`make lab`) gets only what the
# notebooks need; `make test` adds the `test` extra, `make assignments` the
# `teach` extra.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

LEARN_STAMP := $(VENV)/.installed
TEST_STAMP  := $(VENV)/.installed-test
TEACH_STAMP := $(VENV)/.installed-teach

.PHONY: lab test install bench doctor nav assignments hub clean node-client

ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

# install(EXTRAS): create the venv if needed, then install this package with those extras.
# uv installs in a fraction of pip's time; plain pip is the fallback.
define install
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "RPC Lab needs Python 3.10 or newer; this is " + sys.version.split()[0])'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv || true
	if $(BIN)/python -m uv --version >/dev/null 2>&1; then \
	  $(BIN)/python -m uv pip install --quiet --python $(BIN)/python -e '.$(1)'; \
	else \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.$(1)'; \
	fi
endef

lab: $(LEARN_STAMP) node-client
	cd notebooks && ../$(BIN)/jupyter lab $(ROOT_FLAG) 00-start-here.ipynb

# Notebook 12's Node.js gRPC client needs its npm packages; without npm its cell says how to get them.
NODE_STAMP := clients/node/node_modules/.package-lock.json
node-client:
	@if command -v npm >/dev/null 2>&1; then \
	  [ -f $(NODE_STAMP) ] && [ $(NODE_STAMP) -nt clients/node/package-lock.json ] || \
	    (cd clients/node && npm ci --no-audit --no-fund --loglevel=error); \
	else \
	  echo "npm not found: notebook 12's Node.js cells will skip (install Node.js 18+ to run them)"; \
	fi

test: $(TEST_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

install: $(LEARN_STAMP)

# JupyterLab's settings for this venv: no "Jupyter news?" pop-up over the first notebook.
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.json

$(LEARN_STAMP): pyproject.toml tools/jupyterlab-overrides.json
	$(call install,)
	mkdir -p $(dir $(LAB_SETTINGS)) && cp tools/jupyterlab-overrides.json $(LAB_SETTINGS)
	touch $@

$(TEST_STAMP): pyproject.toml
	$(call install,[test])
	touch $@ $(LEARN_STAMP)

$(TEACH_STAMP): pyproject.toml
	$(call install,[test,teach])
	touch $@ $(TEST_STAMP) $(LEARN_STAMP)

doctor: $(LEARN_STAMP)
	$(BIN)/rpclab doctor

bench: $(LEARN_STAMP)
	$(BIN)/rpclab bench

nav: $(TEST_STAMP)
	$(BIN)/python tools/nav.py

# The graded assignments (see TEACHING.md): the student version of each assignment
# in assignments/release/ (not committed). nbgrader runs `alembic` from PATH when it
# creates assignments/gradebook.db.
ASSIGNMENTS := $(notdir $(wildcard assignments/source/*))

assignments: $(TEACH_STAMP)
	cd assignments && for a in $(ASSIGNMENTS); do \
	  PATH="$(abspath $(BIN)):$$PATH" nbgrader generate_assignment $$a --force || exit 1; \
	done
	@echo "Student versions: assignments/release/. Next steps: TEACHING.md."

# A class on JupyterHub, on this server (as root; settings in deploy/jupyterhub/hub.env, see
# TEACHING.md). uv from .venv makes the hub's shared environment in seconds.
hub: $(LEARN_STAMP)
	PATH="$(abspath $(BIN)):$$PATH" deploy/jupyterhub/run

clean:
	rm -rf $(VENV) .pytest_cache artifacts
