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

# The extras each stamp installs. They live in variables because make splits the arguments of
# $(call ...) at every comma: `$(call install,[test,teach])` would pass "[test" alone.
TEST_EXTRAS  := [test]
TEACH_EXTRAS := [test,teach]

.PHONY: lab test install bench doctor nav assignments learner-branch slides hub clean node-client
.PHONY: test-other-pythons test-all-pythons

ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

# install(EXTRAS): check that the Python is one pyproject.toml's requires-python admits (one line
# if not), create the venv if needed, then install this package with those extras.
# uv installs in a fraction of pip's time; plain pip is the fallback.
define install
	@$(PYTHON) tools/check_python.py
	@test ! -x $(BIN)/python || $(BIN)/python tools/check_python.py $(VENV)
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

# The unit tests and the notebooks on every other supported Python this machine has (python3.X on
# PATH, pyenv's), each in a venv of its own (.venv-3.12, ...); the browser tests run in `make test`.
test-other-pythons: $(TEST_STAMP)
	$(BIN)/python tools/other_pythons.py $(PYTEST_ARGS)

test-all-pythons: test test-other-pythons

install: $(LEARN_STAMP)

# JupyterLab's settings for this venv: no "Jupyter news?" pop-up over the first notebook.
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.json

$(LEARN_STAMP): pyproject.toml tools/jupyterlab-overrides.json
	$(call install,)
	mkdir -p $(dir $(LAB_SETTINGS)) && cp tools/jupyterlab-overrides.json $(LAB_SETTINGS)
	touch $@

$(TEST_STAMP): pyproject.toml
	$(call install,$(TEST_EXTRAS))
	touch $@ $(LEARN_STAMP)

$(TEACH_STAMP): pyproject.toml
	$(call install,$(TEACH_EXTRAS))
	touch $@ $(TEST_STAMP) $(LEARN_STAMP)

doctor: $(LEARN_STAMP)
	$(BIN)/rpclab doctor

bench: $(LEARN_STAMP)
	$(BIN)/rpclab bench

nav: $(TEST_STAMP)
	$(BIN)/python tools/nav.py

# The graded assignments (see TEACHING.md): the student version of each assignment
# in assignments/release/ (not committed), every assignment of assignments/source/ in one run
# (the glob is nbgrader's). nbgrader runs `alembic` from PATH when it creates
# assignments/gradebook.db.
assignments: $(TEACH_STAMP)
	@test -d assignments/source || { echo "assignments/source is not here: this is the learners' \
	branch. Teachers build the student versions from the main branch (TEACHING.md)."; exit 1; }
	cd assignments && PATH="$(abspath $(BIN)):$$PATH" nbgrader generate_assignment '*' --force
	@echo "Student versions: assignments/release/. Next steps: TEACHING.md."

# The learners' branch `learn`: this commit without the answer key, with the student versions
# (tools/learner_export.py; TEACHING.md says when to run it and where to push it).
learner-branch: $(TEACH_STAMP)
	$(BIN)/python tools/learner_export.py --branch learn

# Lecture slides from the notebooks (reveal.js, by nbconvert) in artifacts/slides/, not committed.
slides: $(TEST_STAMP)
	$(BIN)/python tools/slides.py --out artifacts/slides

# A class on JupyterHub, on this server (as root; settings in deploy/jupyterhub/hub.env, see
# TEACHING.md). uv from .venv makes the hub's shared environment in seconds.
hub: $(LEARN_STAMP)
	PATH="$(abspath $(BIN)):$$PATH" deploy/jupyterhub/run

clean:
	rm -rf $(VENV) .venv-3.* .pytest_cache artifacts
