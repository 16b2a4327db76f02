# One command to play, one to test. Both create .venv and install what they need on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1

.PHONY: play test setup setup-dev clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.runtime: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# The [amused] extra (diffusers) too: the tests check muse against diffusers' aMUSEd pipelines.
# -c requirements.txt keeps torch at its pinned CPU build while the extra resolves.
$(VENV)/.dev: requirements-dev.txt pyproject.toml $(VENV)/.runtime
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q -c requirements.txt -e '.[amused]'
	touch $@

setup: $(VENV)/.runtime
setup-dev: $(VENV)/.dev

play: setup  ## set up and launch the playground on the shipped model (http://127.0.0.1:7860)
	$(BIN)/python app.py

test: setup-dev  ## set up and run the whole test suite
	$(BIN)/python -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV)
