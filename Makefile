# `make demo` and `make test` create .venv and install the project into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test browser lint format bench bench-gpu clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/resnetlab train

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

# Chromium and its driver for the browser test (tests/serve/test_browser.py), installed with
# apt-get where that is possible; without them the test skips, so this step never fails.
browser:
	@if command -v chromedriver >/dev/null 2>&1 && \
		{ command -v chromium || command -v chromium-browser || command -v google-chrome; } >/dev/null 2>&1; then \
		echo "browser test: Chromium and chromedriver found"; \
	elif command -v apt-get >/dev/null 2>&1; then \
		sudo=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
		{ $$sudo apt-get update -qq && \
		  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } || \
		echo "browser test: could not install chromium chromium-driver; the test will skip"; \
	else \
		echo "browser test: no apt-get; install Chromium and chromedriver, or the test skips"; \
	fi

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(VENV)/.installed-dev
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

# The README's CPU figures (about 20 minutes on 2 cores), then its table: each workload in
# fp32 on both sides, and with the defaults (ours: the calibrated choice, bf16 where the
# CPU has it and it measured faster; the peer: fp32, NCHW).
CPU_WORKLOADS := \
	"--model resnet18 --input-size 64 --batch-size 64" \
	"--model resnet18 --input-size 64 --batch-size 32" \
	"--model resnet50_keras --batch-size 32" \
	"--model resnet20 --batch-size 128"

bench: $(VENV)/.installed
	for w in $(CPU_WORKLOADS); do \
		$(BIN)/resnetlab bench train $$w --precision fp32 --vs torchvision || exit 1; \
		$(BIN)/resnetlab bench train $$w --vs torchvision || exit 1; \
	done
	$(BIN)/resnetlab bench infer --model resnet20 --steps 5 --vs torchvision
	$(BIN)/resnetlab bench infer --model resnet20 --steps 5 --runtime onnxruntime
	$(BIN)/resnetlab bench infer --model resnet20 --steps 5 --runtime onnxruntime-int8
	$(BIN)/resnetlab bench data --data ../shared/data/cifar10-jpg.tar.gz --workers 2 --steps 10
	$(BIN)/resnetlab bench table --update README.md

# The GPU targets of the README's Speed section.
bench-gpu: $(VENV)/.installed
	RESULTS=benchmarks/results PYTHON=$(BIN)/python benchmarks/gpu.sh \
		../shared/data/cifar10-jpg.tar.gz runs/bench-gpu 1800
	$(BIN)/resnetlab bench table --update README.md

clean:
	rm -rf $(VENV) build dist src/*.egg-info
