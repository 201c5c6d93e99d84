# Two-command workflow: `make quickstart` and `make test`. Both first ensure the .venv environment.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: env test test-slow quickstart build-cuda benchmark clean

env:
	@bash tools/setup_env.sh

test: env
	$(PY) -m pytest -q tests

test-slow: env
	$(PY) -m pytest -q -m slow --run-slow tests

quickstart: env
	$(PY) tools/quickstart.py

build-cuda: env
	bash tools/build_cuda.sh

benchmark: env
	$(PY) tools/benchmark.py --config-file configs/cod/focus_dinov2_large.yaml --dtype fp32
	$(PY) tools/benchmark.py --config-file configs/cod/focus_dinov2_large.yaml --dtype bf16

clean:
	rm -rf build *.egg-info output/quickstart
