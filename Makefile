# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Two test processes (pytest-xdist): most tests wait on sockets and subprocesses, not the CPU.
# `make test PYTEST_WORKERS=0` runs them in one process.
PYTEST_WORKERS ?= 2

.PHONY: run test lint migrate bench corpus messages clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "needs $(PYTHON)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	@touch $(STAMP)

run: $(STAMP)
	ESIGN_ENV=$${ESIGN_ENV:-dev} ESIGN_LOG_JSON=$${ESIGN_LOG_JSON:-false} $(BIN)/esign-gateway migrate
	ESIGN_ENV=$${ESIGN_ENV:-dev} ESIGN_LOG_JSON=$${ESIGN_LOG_JSON:-false} $(BIN)/esign-gateway serve --demo

migrate: $(STAMP)
	$(BIN)/esign-gateway migrate

test: $(STAMP)
	@.ci/ensure-chromium
	@.ci/ensure-axe
	@.ci/ensure-pdf-tools
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python bench/sign_throughput.py

# The real-world PDF corpus (../shared/pdf-corpus) through the HTTP API, checked with poppler, qpdf,
# pikepdf and pyHanko; exits non-zero on any failure class. CORPUS_ARGS="--files issue --jobs 2 …"
corpus: $(STAMP)
	@.ci/ensure-pdf-tools
	$(BIN)/python bench/corpus.py $(CORPUS_ARGS)

# The gettext catalog "esign" (cs, sk, en): extract every marked string (babel.cfg) into the
# template and merge it into each language's .po (new entries come empty: tests/unit/test_catalogs.py
# fails until they are translated). The .po files are read at start; nothing is compiled.
LOCALE := esign_gateway/locale
messages: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k text -k ntext:1,2 --ignore-dirs ".* __pycache__" \
		--no-location --sort-output --project esign-gateway -o $(LOCALE)/esign.pot .
	$(BIN)/pybabel update -i $(LOCALE)/esign.pot -d $(LOCALE) -D esign --no-fuzzy-matching --ignore-obsolete \
		--width 100

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
