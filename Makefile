# Thin wrappers; the work is in scripts/ and the imgbench CLI.
SHELL := /bin/bash
CORE := .venv/core/bin

.PHONY: setup demo case-study test test-core test-pt test-tf bench soak lint clean

setup:
	scripts/setup.sh

demo: setup
	$(CORE)/imgbench demo

# Each suite runs in the venv of the framework it imports (see README: "Why one venv per service").
test: setup
	scripts/test.sh

test-core: setup
	scripts/test.sh core

test-pt: setup
	scripts/test.sh pt

test-tf: setup
	scripts/test.sh tf

bench: setup
	$(CORE)/python -m imgbench.bench.suite

# Not in CI: each server at 70% of its SLO capacity for 30 min (~1 h 50 min); SOAK_ARGS="--minutes 5".
soak: setup
	$(CORE)/python -m imgbench.bench.soak $(SOAK_ARGS)

# Not in CI: the article's case study (ResNet-50, 512 px, fp32 vs INT8 on Triton), ~20 min here.
case-study: setup
	$(CORE)/imgbench demo --scenario case-study $(CASE_STUDY_ARGS)

lint: setup
	$(CORE)/ruff check .
	$(CORE)/ruff format --check .

clean:
	rm -rf runs
