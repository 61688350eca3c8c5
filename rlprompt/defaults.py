"""Defaults used in more than one module, each stated once. Imports nothing.

Every default a user can set is a field of :class:`rlprompt.config.TrainConfig`, which takes its
value from here where another module (a reward, the env, the policy) needs the same number.
"""

DEFAULT_MODEL = "smollm2-135m"
"""Target LM of the demo run, and the policy backbone when the target cannot be one."""
PROMPT_LENGTH = 5
"""Tokens per prompt (the paper's 5)."""
INSTRUCTION_LENGTH = 48
"""The most tokens of an instruction an instruction writer (grpo, ape, opro, grpo-opro) writes."""
CORRECT_COEF = 200.0
"""Gap reward scale when the gold class wins (the paper's)."""
INCORRECT_COEF = 180.0
"""Gap reward scale when it loses (the paper's)."""
ADAPTER_HIDDEN = 2048
"""Width of the policy's adapter MLP (the paper's)."""
SELECTION_METRIC = "accuracy"
"""The reward metric the prompt is selected on, on dev."""
