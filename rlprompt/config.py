"""Training configuration: one dataclass, readable from a TOML file and the command line."""

from __future__ import annotations

import math
import sys
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI (declared for 3.10 only)
    import tomli as tomllib

from rlprompt.defaults import ADAPTER_HIDDEN, CORRECT_COEF, DEFAULT_MODEL, INCORRECT_COEF, INSTRUCTION_LENGTH, PROMPT_LENGTH
from rlprompt.devices import check_device_name, check_dtype_name, resolve_device
from rlprompt.errors import RLPromptError
from rlprompt.scoring.base import calibration_splits
from rlprompt.search import TEXT_METHODS, check_search_method

# (setting, smallest valid value, why), checked by TrainConfig.check.
_LOWER_BOUNDS = (
    ("prompt_length", 1, ""),
    ("num_prompts", 2, " (rewards are z-scored across the batch)"),
    ("steps", 1, ""),
    ("max_evaluations", 1, ""),
    ("patience", 1, ""),
    ("n_epochs", 1, ""),
    ("ent_coef", 0, ""),
    ("adapter_hidden", 1, ""),
    ("meta_examples", 0, ""),
    ("lora_rank", 1, ""),
    ("kl_coef", 0, ""),
    ("fluency_weight", 0, " (a negative weight would reward token salad)"),
    ("incorrect_coef", 0, ""),
    ("top_k", 1, ""),
    ("seed", 0, ""),
    ("max_batch_tokens", 1, ""),
    ("sample_top_k", 0, " (0: sample from every action)"),
    ("greedy_every", 0, " (0: never)"),
    ("min_length", 0, " (0: the empty prompt may be chosen)"),
)
# Settings that must be > 0.
_POSITIVE = ("learning_rate", "correct_coef", "temperature", "clip_range")


@dataclass
class TrainConfig:
    """Everything a training run depends on. The defaults are the offline demo run."""

    task: str = "demo"
    """Task name: a preset (sst-2, yelp-2, mr, cr, sst-5, yelp-5, agnews, subj, trec, yahoo, dbpedia,
    demo) or your own name with --data; with no --task, a --data path naming a preset
    (.../16-shot/trec/16-13) is that task."""
    data: str | None = None
    """Folder with train/dev/test files (.tsv/.csv/.jsonl); none for the built-in demo."""
    template: str | None = None
    """Template with {sentence}, {prompt} and {mask}; default: the task's."""
    verbalizers: list[str] | None = None
    """One single-token label word per class; default: the task's."""
    label_names: list[str] | None = None
    """Names of the classes, for reports; default: the task's."""
    manual_prompt: str | None = None
    """The hand-written baseline prompt; default: the task's."""
    text_column: str | None = None
    """Column with the input text; default: sentence or text."""
    label_column: str = "label"
    """Column with the label."""
    target_lm: str = DEFAULT_MODEL
    """Frozen model the prompt is optimised for (alias, .gguf, folder or hub id), or a backend spec
    such as fake (no model: deterministic scores, for tests) or openai:MODEL@http://HOST:PORT/v1 (a
    model behind an OpenAI-compatible server)."""
    policy_lm: str | None = None
    """Causal LM backbone of the policy; default: the target if it is a causal LM loaded here, else
    the default target model."""
    prompt_length: int | None = None
    """Tokens per prompt (the most, when min_length is smaller); default: 5 for token policies, 48
    for instruction writers (grpo, ape, opro, grpo-opro), which end earlier at their end-of-turn token."""
    min_length: int | None = None
    """Fewest tokens per prompt: below prompt_length the policy also has an end-of-prompt action,
    so prompts of min_length..prompt_length tokens are searched (0: the empty prompt too, which
    is then scored first as a candidate); default: prompt_length (fixed length)."""
    vocabulary: str = "words"
    """Action vocabulary: all, words (word-start alphabetic tokens), top-K (the K words the backbone
    finds likeliest), or a word-list file."""
    num_prompts: int = 16
    """Prompts sampled and scored together per training step (the batch the reward z-scores)."""
    steps: int = 40
    """Training steps; each samples num_prompts prompts and updates the policy once."""
    algo: str = "ppo"
    """Search method, one of the registered ones (rlprompt.search): ppo and a2c (RL on
    stable-baselines3), sql (soft Q-learning, the paper's algorithm), random (uniform random
    search, the baseline)."""
    max_evaluations: int | None = None
    """Stop once the training reward has scored this many distinct prompts (the target-LM
    budget); default: run all steps."""
    patience: int | None = None
    """Stop once this many steps in a row have scored no new prompt (a policy that only samples
    prompts it has seen spends no budget and finds nothing); default: run all steps."""
    learning_rate: float | None = None
    """Learning rate of the trainable policy parts; default: the method's (ppo, a2c 5e-4; sql
    5e-5, the paper's; grpo, grpo-opro 3e-4)."""
    sample_top_k: int | None = None
    """Sample each prompt token from the K likeliest actions only; 0: from all of them; default:
    the method's (sql 256, the paper's; ppo, a2c all)."""
    greedy_every: int = 10
    """Every this many steps, score the policy's most likely (greedy) prompt on train and dev; it
    enters the candidates (the paper's every 10); 0: never."""
    n_epochs: int = 4
    """PPO and GRPO epochs over each batch of prompts."""
    ent_coef: float = 0.0
    """Entropy bonus (ppo, a2c)."""
    adapter_hidden: int = ADAPTER_HIDDEN
    """Width of the policy's adapter MLP (2048 in the paper)."""
    task_description: str | None = None
    """What the inputs are and what is asked, in one line, for an instruction writer's meta-prompt
    (grpo, ape, opro, grpo-opro); default: the preset's."""
    meta_prompt: str | None = None
    """A file with the instruction writer's meta-prompt, whose fields {description}, {labels},
    {examples} and {instruction} are filled in; default: the built-in one."""
    meta_examples: int = 4
    """Labelled train examples shown in the instruction writer's meta-prompt."""
    temperature: float = 1.0
    """Sampling temperature of an instruction writer."""
    lora_rank: int = 8
    """Rank of the instruction writer's LoRA adapters (grpo)."""
    kl_coef: float = 0.04
    """Weight of the KL penalty to the untrained LM (grpo)."""
    clip_range: float = 0.2
    """Clipping of the probability ratio (grpo)."""
    reward: str = "gap"
    """Training reward: gap (the paper's) or accuracy."""
    correct_coef: float = CORRECT_COEF
    """Gap reward scale when the gold class wins."""
    incorrect_coef: float = INCORRECT_COEF
    """Gap reward scale when it loses."""
    fluency_weight: float = 0.0
    """Weight of the fluency term: the prompt's mean token log-likelihood under the policy backbone."""
    calibration: str = "none"
    """Class-logit calibration: none, or train-mean (each prompt's mean logits over the train
    inputs are subtracted, so a prompt is rewarded for ordering inputs, not for shifting the
    model's label bias; the prompt file records it and evaluation applies it too)."""
    top_k: int = 8
    """Distinct prompts kept by training reward and scored on dev; the best on dev is the result."""
    seed: int = 0
    """Seed for the policy's initialisation and sampling."""
    run_name: str | None = None
    """Folder name under runs_dir; default: task-target-seed."""
    runs_dir: str = "runs"
    """Where run folders go."""
    evaluate_test: bool = True
    """Score the empty, manual and learned prompts on the test split at the end."""
    device: str = "auto"
    """Where the target LM, the policy and the scorer run: auto (CUDA, then MPS, then CPU), cpu,
    cuda, cuda:N or mps."""
    dtype: str = "auto"
    """Target LM and backbone weights: fp32, bf16, or auto (bf16 where the device has fast bf16:
    CUDA GPUs that support it, CPUs with AMX or AVX512-BF16; else fp32)."""
    max_batch_tokens: int | None = None
    """Memory bound of one scoring forward pass, in tokens; default: 16384 on a CPU, 65536 on CUDA."""

    def __post_init__(self) -> None:
        if self.prompt_length is None:
            self.prompt_length = INSTRUCTION_LENGTH if self.algo in TEXT_METHODS else PROMPT_LENGTH

    def check(self) -> None:
        """Raise on values no run could use, before anything loads; also that the device exists."""
        self._check_types()
        for name, low, why in _LOWER_BOUNDS:
            value = getattr(self, name)
            if value is not None and value < low:
                flag = "--" + name.replace("_", "-")
                raise RLPromptError(f"{flag} must be >= {low:g}{why}, got {value!r}")
        for name in _POSITIVE:
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise RLPromptError(f"--{name.replace('_', '-')} must be a positive number, got {value!r}")
        if self.meta_prompt is not None:
            from rlprompt.meta_prompt import read_meta_prompt

            read_meta_prompt(self.meta_prompt)  # raises on a missing or malformed file
        for name in ("ent_coef", "fluency_weight", "incorrect_coef", "kl_coef"):
            if not math.isfinite(getattr(self, name)):
                raise RLPromptError(f"--{name.replace('_', '-')} must be a finite number, got {getattr(self, name)!r}")
        if self.seed >= 2**32:
            raise RLPromptError(f"--seed must be below 2**32 (numpy's and torch's seed range), got {self.seed}")
        if self.min_length is not None and self.min_length > self.prompt_length:
            raise RLPromptError(f"--min-length must be at most the prompt length ({self.prompt_length}), got {self.min_length}")
        check_search_method(self.algo)
        if self.reward not in ("gap", "accuracy"):
            raise RLPromptError(f"unknown reward '{self.reward}'; valid: gap, accuracy")
        calibration_splits(self.calibration)  # raises on an unknown calibration
        check_dtype_name(self.dtype)
        check_device_name(self.device)
        resolve_device(self.device)  # a device this machine lacks fails here, not after loading

    @property
    def shortest_prompt(self) -> int:
        """``min_length``, else ``prompt_length``: the fewest tokens a prompt may have."""
        return self.prompt_length if self.min_length is None else self.min_length

    def _check_types(self) -> None:
        hints = typing.get_type_hints(type(self))
        for item in fields(self):
            value = getattr(self, item.name)
            expected = hints[item.name]
            allowed = typing.get_args(expected) or (expected,)
            if value is None and type(None) in allowed:
                continue
            base = [typing.get_origin(t) or t for t in allowed if t is not type(None)]
            if float in base and isinstance(value, int) and not isinstance(value, bool):
                continue
            if not isinstance(value, tuple(base)) or (isinstance(value, bool) and bool not in base):
                names = " or ".join(t.__name__ for t in base)
                raise RLPromptError(f"setting '{item.name}' must be {names}, got {type(value).__name__} {value!r}")
            if list in base and not all(isinstance(v, str) for v in value):
                raise RLPromptError(f"setting '{item.name}' must be a list of strings, got {value!r}")

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Read a config file; ``overrides`` (e.g. from the command line) win."""
        path = Path(path)
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise RLPromptError(f"config file '{path}' does not exist") from error
        except tomllib.TOMLDecodeError as error:
            raise RLPromptError(f"config file '{path}' is not valid TOML: {error}") from error
        except UnicodeDecodeError as error:
            raise RLPromptError(f"config file '{path}' is not UTF-8 text ({error.reason}); TOML files are UTF-8") from error
        except OSError as error:  # a folder, or no permission
            raise RLPromptError(f"config file '{path}' cannot be read: {error.strerror or error}") from error
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_mapping(values, f"config file '{path}'")

    @classmethod
    def from_mapping(cls, values: dict[str, Any], source: str) -> TrainConfig:
        """A config from setting names and values; ``source`` names where they came from in the error
        for an unknown name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise RLPromptError(f"{source} has unknown keys {unknown}; valid keys: {', '.join(sorted(known))}")
        return cls(**values)
