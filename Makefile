# Named tasks. Every target creates the virtualenv and installs what it needs on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 1
PYTEST_ARGS ?=

.PHONY: run test lint format openapi crd-schemas migrate bench fuzz mutation clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)  ## serve on 127.0.0.1:8000 (embedded PostgreSQL unless DATABASE_URL is set)
	$(BIN)/runplane serve --host $(HOST) --port $(PORT) --workers $(WORKERS)

test: $(STAMP)  ## the whole test suite on real PostgreSQL
	$(BIN)/pytest -n 2 --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app tests

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

openapi: $(STAMP)  ## regenerate the committed OpenAPI document
	$(BIN)/runplane openapi --out openapi/openapi.json

crd-schemas: $(STAMP)  ## regenerate app/rendering/crd_schemas.json from the pinned upstream modules (needs Go)
	$(BIN)/python tools/crd-schemas.py

migrate: $(STAMP)
	$(BIN)/runplane migrate

FUZZ_EXAMPLES ?= 500
FUZZ_STEPS ?= 20
# FUZZ_SEED=<seed> replays a run (each run prints its seed); unset, every run takes a new one.
fuzz: $(STAMP)  ## the contract fuzzer with a large budget (FUZZ_EXAMPLES per operation, FUZZ_STEPS per sequence)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_STEPS=$(FUZZ_STEPS) \
		$(BIN)/pytest -p no:cacheprovider tests/reliability/test_fuzz_contract.py $(PYTEST_ARGS)

# MUTANTS per module (0: all of them), run by MUTATION_WORKERS processes; see tests/README.md.
MUTANTS ?= 150
MUTATION_WORKERS ?= 2
$(VENV)/.mutation-installed: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,mutation]'
	touch $@

mutation: $(VENV)/.mutation-installed  ## mutation testing of status.py, engine.py and common.py (not part of test)
	$(BIN)/python -m tests.mutation --sample $(MUTANTS) --workers $(MUTATION_WORKERS)

bench: $(STAMP)
	$(BIN)/python bench/bench_policy.py
	$(BIN)/python bench/bench_render.py

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache
