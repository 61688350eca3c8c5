"""Search methods that write whole instructions with a causal LM (APE, OPRO, GRPO).

Each batch: the writer samples ``num_prompts`` instructions after a meta-prompt built from the
task (:mod:`rlprompt.meta_prompt`), with OPRO's history the best instructions scored so far, the
cached reward scores the new ones on train, and the
batch goes to the selector, as for every method: the budget (``--max-evaluations``),
``--patience``, ``prompt.json`` and ``--resume`` work the same. No token-by-token env is built.
Sampling is seeded by the seed and the batch number, so a resumed run draws what an unbroken
run would have drawn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rlprompt.envs.prompt_env import scored_info
from rlprompt.meta_prompt import MetaPromptParts, meta_prompt_parts, opro_meta_prompt, read_meta_prompt
from rlprompt.policies.instruction_writer import InstructionWriter, Samples
from rlprompt.search.base import SearchContext, SearchMethod


class TextSearch(SearchMethod):
    """Proposes whole instructions written by an :class:`InstructionWriter` after a meta-prompt.

    A batch here is APE's: write after the meta-prompt, score. Subclasses set
    :attr:`shown_history` (OPRO) or learn from each batch (GRPO); the writer here is the untrained
    policy LM, shared with the run (no adapters).
    """

    shown_history: int = 0
    """Scored instructions shown in the meta-prompt, the best by train accuracy (OPRO's 20);
    0: the task's fixed meta-prompt."""

    def __init__(self, context: SearchContext) -> None:
        super().__init__(context)
        config, task = context.config, context.task
        if task is None:
            from rlprompt.errors import RLPromptError

            raise RLPromptError(f"--algo {self.name} needs the task in its search context (to build the meta-prompt)")
        self.parts: MetaPromptParts = meta_prompt_parts(task, config.task_description, task.instruction, config.meta_examples, config.seed)
        self.meta_template = read_meta_prompt(config.meta_prompt)
        self.writer = self.make_writer()
        self.meta_prompt_ids = self.writer.encode_meta_prompt(self.meta_prompt_text)

    def make_writer(self) -> InstructionWriter:
        """The writer: the run's policy LM as it is."""
        config = self.context.config
        return InstructionWriter(self.context.backbone, config.prompt_length, config.temperature)

    @property
    def meta_prompt_text(self) -> str:
        """The meta-prompt the writer reads (recorded in the prompt file)."""
        return self.parts.fill(self.meta_template)

    def writer_record(self) -> dict[str, str | None]:
        return {"lm": self.context.backbone.name, "algo": self.name, "meta_prompt": self.meta_prompt_text, "adapter": self.adapter_path}

    adapter_path: str | None = None
    """Where the writer's adapters are, relative to the run folder (None: it has none)."""

    def generator(self) -> torch.Generator:
        """The sampling generator of the next batch: seeded by the seed and the batch number."""
        seed = int(np.random.SeedSequence([self.context.config.seed, self.context.selector.batches]).generate_state(1)[0])
        return torch.Generator().manual_seed(seed)

    def score(self, samples: Samples) -> tuple[list[dict[str, Any]], dict[str, float | None]]:
        """The samples scored on train (each new text once), as the selector takes them, and what
        every text method records per batch: how many texts were new and their mean train
        reward, how many distinct texts the batch had, and its mean reward and accuracy."""
        reward = self.context.reward
        new = {text for text in samples.texts if text not in reward}
        batch = reward(samples.texts)
        infos = [scored_info(text, ids, batch, i) for i, (text, ids) in enumerate(zip(samples.texts, samples.token_ids))]
        new_rewards = [float(batch.rewards[samples.texts.index(text)]) for text in new]
        return infos, {
            "new_instructions": len(new),
            "distinct_in_batch": len(set(samples.texts)),
            "reward_mean": float(np.mean(batch.rewards)),
            "new_reward_mean": float(np.mean(new_rewards)) if new_rewards else None,
            "accuracy_mean": float(np.mean([info["metrics"].get("accuracy", np.nan) for info in infos])),
        }

    def step(self) -> tuple[list[dict[str, Any]], dict[str, float | None]]:
        """One batch: write, score (and, in a subclass, learn); the scored infos and the batch's statistics."""
        return self.score(self.writer.sample(self.batch_meta_prompt(), self.context.config.num_prompts, self.generator()))

    def batch_meta_prompt(self) -> list[int]:
        """Ids of the meta-prompt the next batch is written after: the fixed one, or with
        :attr:`shown_history` OPRO's, read from the reward cache so that a resumed run shows what
        an unbroken one would. There the user's instruction is scored first (one evaluation), so
        the first batch has a score to improve on."""
        if not self.shown_history:
            return self.meta_prompt_ids
        seed_instruction = self.parts.instruction
        if seed_instruction and seed_instruction not in self.context.reward:
            self.context.selector.add_candidate(self.score_one(seed_instruction))
        history = self.history()
        return self.writer.encode_meta_prompt(opro_meta_prompt(self.parts, history) if history else self.meta_prompt_text)

    def history(self) -> list[tuple[str, float]]:
        """The best :attr:`shown_history` instructions scored so far and their train accuracy."""
        scored = [(text, metrics["accuracy"]) for text, (_, metrics) in self.context.reward.scored().items() if text]
        return sorted(scored, key=lambda item: item[1], reverse=True)[: self.shown_history]

    def score_one(self, text: str) -> dict[str, Any]:
        """One instruction scored on train, as the selector takes it."""
        ids = self.writer.tokenizer(text, add_special_tokens=False).input_ids
        return scored_info(text, ids, self.context.reward([text]), 0)

    def run(self, steps: int, progress_bar: bool) -> None:
        from tqdm.auto import tqdm

        context = self.context
        bar = tqdm(range(steps), desc=self.name, unit="step", disable=not progress_bar)
        for _ in bar:
            infos, stats = self.step()
            context.selector.add(infos, stats)
            bar.set_postfix(evaluations=context.reward.evaluations, best_dev=f"{100 * (context.selector.best.dev_accuracy or 0):.1f}")
            if context.selector.should_stop(context.config.max_evaluations, context.config.patience):
                return
