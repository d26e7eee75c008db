# The README's quick start: `make lab` and `make test` work on a fresh machine.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup lab drill lab-status lab-down test test-fast lint typecheck check clean

setup:
	@./scripts/setup.sh

lab: setup
	$(BIN)/failover lab up

# The main job: the default drill (termination-notice) on the lab, started if needed.
# SCENARIO=provider-blackout or ARGS="--repeat 5" choose another.
SCENARIO ?= termination-notice
drill: setup
	$(BIN)/failover lab up
	$(BIN)/failover drill --yes --scenario $(SCENARIO) $(ARGS)

# No setup for these two: stopping a lab must work even when installing would not.
lab-status:
	@if [ -x $(BIN)/failover ]; then $(BIN)/failover lab status; else echo "no .venv: run make lab first"; exit 1; fi

lab-down:
	@if [ -x $(BIN)/failover ]; then $(BIN)/failover lab down; else echo "no .venv, so no lab was started from here"; fi

lint: setup
	$(BIN)/ruff check failover infra tests stacks

typecheck: setup
	$(BIN)/mypy

# Lint and types first: they take seconds and fail fast. Two workers, a file at a time:
# the labs' tests mostly wait on servers (tests/conftest.py gives each worker's labs
# subnets of their own). A third worker would save minutes, but the drills' timings
# (a loaded machine's slow moves) made it flaky on two cores.
test: setup lint typecheck
	$(BIN)/python -m pytest -n 2 --dist loadfile

# The unit layer alone: no server started (tests/conftest.py refuses any), under a minute.
test-fast: setup
	$(BIN)/python -m pytest -m "not lab"

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
