# kmemspec: every target creates .venv and installs the pinned dependencies on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all verify verify-long test lint bench fuzz clean subjects

all: verify

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

verify: $(STAMP)
	$(BIN)/python -m proofs.verify $(VERIFY_ARGS)

verify-long: $(STAMP)
	$(BIN)/python -m proofs.verify --long $(VERIFY_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 tests

lint: $(STAMP)
	$(BIN)/ruff check spec impl proofs tests cli benchmarks tools oracle tracecheck
	$(BIN)/mypy --strict spec impl proofs tests cli benchmarks tools oracle tracecheck

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -p no:cacheprovider tests/test_state_machine.py $(FUZZ_ARGS)

# The example C subject and its broken variants (examples/subjects/README.md).
subjects:
	$(MAKE) -C examples/subjects OUT=$(CURDIR)/build/subjects

clean:
	rm -rf $(VENV) build .mypy_cache .pytest_cache .ruff_cache .hypothesis
