# voidflow: `make demo` and `make test` each set up everything they need on a fresh Debian machine with Python 3.11.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Elsewhere than this build farm, point pip at PyTorch's CPU wheels, e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.voidflow-installed
# Zou (Kitsu's server) for the publish tests: its own virtualenv, as it pins its own Flask stack
ZOU_VENV := .venv-zou
ZOU_PIN := zou==1.0.97
ZOU_STAMP := $(ZOU_VENV)/.zou-installed

export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: setup demo test quality style tools

setup: $(STAMP) tools

$(STAMP): pyproject.toml Makefile
	@command -v $(PYTHON) >/dev/null || { echo "voidflow needs $(PYTHON) (Python 3.11) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX) --extra-index-url https://pypi.org/simple) $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[ml,dev,aaf,trackers]'
	$(BIN)/pip install --quiet --no-deps --no-build-isolation sam2==1.1.0
	$(BIN)/python -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 'expected the CPU build of torch 2.13.0, got ' + torch.__version__)"
	touch $(STAMP)

$(ZOU_STAMP): Makefile
	test -x $(ZOU_VENV)/bin/python || $(PYTHON) -m venv $(ZOU_VENV)
	$(ZOU_VENV)/bin/pip install --quiet $(ZOU_PIN)
	touch $(ZOU_STAMP)

tools:
	@if command -v redis-server >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing redis-server (Zou's store, for the publish tests) with apt-get ..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null; \
	else \
		echo "voidflow's tests need redis-server on PATH: install it (e.g. sudo apt-get install redis-server) and run make again"; exit 1; \
	fi
	@if command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium (the review room's browser tests drive it with Playwright) with apt-get ..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "voidflow's tests need chromium on PATH: install it (e.g. sudo apt-get install chromium) and run make again"; exit 1; \
	fi
	@if command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing ffmpeg and ffprobe with apt-get ..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null; \
	else \
		echo "voidflow needs ffmpeg and ffprobe on PATH: install them (e.g. sudo apt-get install ffmpeg) and run make again"; exit 1; \
	fi

demo: setup
	$(BIN)/voidflow demo --out demo-out

test: setup $(ZOU_STAMP)
	$(BIN)/pytest -q

quality: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@# mypy cannot follow the editable install's package-dir map: it reads the rings through links named as installed
	mkdir -p .typecheck/voidflow && for ring in void_ops tasks flows infra deployments; do ln -sfn ../../$$ring .typecheck/voidflow/$$ring; done
	MYPYPATH=.typecheck $(BIN)/mypy --explicit-package-bases .typecheck/voidflow

style: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
