# The commands of the README. `make demo` sets everything up and runs the main job;
# `make test` runs the whole test suite against a real Kafka + MinIO.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: system install demo test unit lint stack-up stack-down clean

# The runtime packages get the images' pins (deploy/docker/constraints.txt), so the tests
# run what the images ship; the dev tools are not pinned.
$(BIN)/pixelfleet: pyproject.toml deploy/docker/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,restore,demo]' -c deploy/docker/constraints.txt
	@touch $@

install: $(BIN)/pixelfleet

system:
	bash .ci/system-deps.sh

# The main job: the local stack, one worker per stage, the bundled samples, a live view,
# a summary and an HTML report (its path is printed at the end).
demo: system install
	$(BIN)/pixelfleet demo

test: install
	$(BIN)/pytest

unit: install
	$(BIN)/pytest -m unit

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

stack-up: install
	$(BIN)/pixelfleet dev up

stack-down: install
	$(BIN)/pixelfleet dev down

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
