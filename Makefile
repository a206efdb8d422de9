# RPC Lab: `make lab` to learn, `make test` to check everything.
# Both create .venv and install into it the first time, and again only when
# pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EXTRAS ?= test
PYTEST_ARGS ?=

.PHONY: lab test install bench doctor nav assignments clean

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

# The graded assignments (see TEACHING.md): the `teach` extra (nbgrader), then the
# student version of each assignment in assignments/release/ (not committed).
# nbgrader runs `alembic` from PATH when it creates assignments/gradebook.db.
ASSIGNMENTS := $(notdir $(wildcard assignments/source/*))
TEACH_STAMP := $(VENV)/.installed-teach

assignments: $(TEACH_STAMP)
	cd assignments && for a in $(ASSIGNMENTS); do \
	  PATH="$(abspath $(BIN)):$$PATH" nbgrader generate_assignment $$a --force || exit 1; \
	done
	@echo "Student versions: assignments/release/. Next steps: TEACHING.md."

$(TEACH_STAMP): $(STAMP)
	if $(BIN)/python -m uv --version >/dev/null 2>&1; then \
	  $(BIN)/python -m uv pip install --quiet --python $(BIN)/python -e '.[$(EXTRAS),teach]'; \
	else \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS),teach]'; \
	fi
	touch $(TEACH_STAMP)

clean:
	rm -rf $(VENV) .pytest_cache artifacts
