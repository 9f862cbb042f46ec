# mmnerd — thin targets over the `mmnerd` CLI. Every target takes PIPELINE=pipelines/<name>.toml
# and creates the virtual environments it needs on first use.
PIPELINE ?= pipelines/sample.toml
PYTHON   ?= python3
VENV     := .venv
VENV_LS  := .venv-ls
PY       := $(VENV)/bin/python
MMNERD   := $(VENV)/bin/mmnerd
APP_OK   := $(VENV)/.installed
LS_OK    := $(VENV_LS)/.installed
BROWSER_OK := $(VENV)/.browser-ok
LABEL_STUDIO_VERSION := 1.23.2
PIP      := pip install --quiet --progress-bar off --disable-pip-version-check
PYTEST_ARGS ?=
export PIPELINE
export OMP_NUM_THREADS ?= 2
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: setup collect dedup annotate simulate pull export benchmark demo test lint format bench bench-quick clean clean-all ls-down browser-deps postgres-deps

setup: $(APP_OK) $(LS_OK) ## create .venv (app, torch==2.13.0 CPU) and .venv-ls (Label Studio server)

$(APP_OK): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/$(PIP) --upgrade pip
	$(VENV)/bin/$(PIP) "torch==2.13.0"
	$(VENV)/bin/$(PIP) -e ".[train,dask,dev]"
	touch $@

$(LS_OK):
	test -x $(VENV_LS)/bin/python || $(PYTHON) -m venv $(VENV_LS)
	$(VENV_LS)/bin/$(PIP) --upgrade pip
	$(VENV_LS)/bin/$(PIP) "label-studio==$(LABEL_STUDIO_VERSION)"
	touch $@

collect: $(APP_OK) ## collect posts, language ID, normalise, tokenise, fetch images
	$(MMNERD) collect -p $(PIPELINE)

dedup: $(APP_OK) ## perceptual hashing + near-duplicate clusters
	$(MMNERD) dedup -p $(PIPELINE)

annotate: $(APP_OK) $(LS_OK) ## start Label Studio (127.0.0.1) and push tasks
	$(MMNERD) annotate push -p $(PIPELINE)

simulate: $(APP_OK) $(LS_OK) ## SIMULATED annotators (demo/tests only)
	$(MMNERD) annotate simulate -p $(PIPELINE)

pull: $(APP_OK) $(LS_OK) ## pull annotations -> strict IOB2
	$(MMNERD) pull -p $(PIPELINE)

export: $(APP_OK) ## Parquet splits + manifest + dataset card
	$(MMNERD) export -p $(PIPELINE)

benchmark: $(APP_OK) ## train baselines + 2M-NER reference, write reports/
	$(MMNERD) benchmark -p $(PIPELINE)

demo: $(APP_OK) $(LS_OK) ## the whole chain on the bundled synthetic sample, offline
	$(MMNERD) collect -p $(PIPELINE)
	$(MMNERD) dedup -p $(PIPELINE)
	$(MMNERD) annotate push -p $(PIPELINE)
	$(MMNERD) annotate simulate -p $(PIPELINE)
	$(MMNERD) pull -p $(PIPELINE)
	$(MMNERD) export -p $(PIPELINE)
	$(MMNERD) benchmark -p $(PIPELINE)

ls-down: $(APP_OK) ## stop the Label Studio server started by `make annotate`
	$(MMNERD) ls down -p $(PIPELINE)

browser-deps: $(BROWSER_OK) ## Debian chromium + emoji font (apt) and playwright, for browser tests

$(BROWSER_OK): $(APP_OK)
	test -x /usr/bin/chromium || { DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-noto-color-emoji; }
	$(VENV)/bin/$(PIP) playwright
	touch $@

postgres-deps: ## PostgreSQL's programs (apt, where missing) for labelstudio.database = postgresql and its tests
	@if command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then \
	  echo "postgres-deps: PostgreSQL found"; \
	else \
	  DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; \
	fi

test: $(APP_OK) $(LS_OK) browser-deps postgres-deps ## the whole test suite (starts its own Label Studio on SQLite and on PostgreSQL)
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

lint: $(APP_OK) ## ruff lint + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(APP_OK)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(APP_OK) $(LS_OK) ## benchmarks/ with the scale checks (~1 h): tables, benchmarks/results.json
	$(PY) benchmarks/run_all.py

bench-quick: $(APP_OK) $(LS_OK) ## benchmarks/ at smoke sizes (a few minutes)
	$(PY) benchmarks/run_all.py --quick

clean: ## remove derived outputs of every pipeline (stages, exports, reports); annotations, journals, images, keys stay
	@test -x $(MMNERD) || { echo "nothing to clean (no .venv yet)"; exit 0; }; \
	  for p in pipelines/*.toml; do $(MMNERD) clean -p $$p || exit 1; done

clean-all: $(APP_OK) ## ALSO delete PIPELINE's images, journals, key and Label Studio's annotations (asks)
	$(MMNERD) clean --all --labelstudio -p $(PIPELINE)
