"""A policy that writes a whole instruction: a causal (instruct) LM, optionally with LoRA adapters.

The LM reads a meta-prompt (:mod:`rlprompt.meta_prompt`: the task, its label words, a few
labelled examples, the user's instruction) and writes the instruction token by token, up to
``max_new_tokens`` or its end-of-turn token. With adapters (PEFT's LoRA, initialised to zero)
the untrained writer samples exactly what the plain LM samples, so step 0 of an RL run *is* the
APE baseline; ``disable_adapter()`` gives the untrained LM back for the KL term.

The meta-prompt runs once per call; its keys/values serve every sample (expanded, not copied),
for sampling and for the log-probabilities the update needs alike.
"""

from __future__ import annotations

import re
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from rlprompt.models import LoadedModel

END_OF_TURN_TOKENS = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>", "<|endoftext|>")
"""Tokens that end an assistant turn in common chat formats (ChatML, Gemma, Llama 3, Phi)."""


@dataclass(frozen=True)
class LoraSettings:
    """The adapters a trainable writer gets (PEFT ``LoraConfig``)."""

    rank: int = 8
    """LoRA rank r."""
    alpha: int = 16
    """LoRA scale numerator (the update is scaled by alpha / r)."""
    target_modules: tuple[str, ...] | None = None
    """Linear layers that get adapters; None: PEFT's default for the architecture (the attention
    queries and values, as in the LoRA paper: ``q_proj``/``v_proj`` on Llama and Gemma, ``c_attn`` on GPT-2)."""


@dataclass
class Samples:
    """Instructions written in one call."""

    token_ids: list[tuple[int, ...]]
    """Each sample's generated ids, its end-of-turn token included when it wrote one."""
    texts: list[str]
    """Each sample's instruction (:func:`instruction_text` of its ids)."""


def instruction_text(raw: str) -> str:
    """The instruction in a generated text: its first non-empty line, without surrounding quotes
    or a leading label such as ``Instruction:`` (small LMs often add both)."""
    line = next((line.strip() for line in raw.splitlines() if line.strip()), "")
    line = re.sub(r"^(new |better |improved )?instruction\s*:\s*", "", line, flags=re.IGNORECASE)
    return line.strip().strip("\"'`").strip()


def stop_token_ids(tokenizer, model) -> list[int]:
    """The ids that end a sample: the tokenizer's EOS, the model's generation EOS ids and any
    end-of-turn token of a known chat format in the vocabulary."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    vocab = tokenizer.get_vocab()
    ids.update(vocab[token] for token in END_OF_TURN_TOKENS if token in vocab)
    return sorted(i for i in ids if i is not None)


class InstructionWriter:
    """Samples instructions from a causal LM after a meta-prompt; trainable through LoRA adapters.

    Args:
        lm: The causal LM. A trainable writer needs its own copy: adapters are injected into
            its modules in place.
        max_new_tokens: The most tokens one instruction may have.
        temperature: Sampling temperature.
        lora: Adapter settings; None: no adapters (APE, OPRO: the untrained LM only).
    """

    def __init__(self, lm: LoadedModel, max_new_tokens: int, temperature: float = 1.0, lora: LoraSettings | None = None) -> None:
        self.lm = lm
        self.tokenizer = lm.tokenizer
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.device = lm.device
        self.stop_ids = stop_token_ids(lm.tokenizer, lm.model)
        self.pad_id = self.stop_ids[0]
        self.model = lm.model
        self.trainable = lora is not None
        if lora is not None:
            from peft import LoraConfig, get_peft_model

            config = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, target_modules=list(lora.target_modules) if lora.target_modules else None, lora_dropout=0.0, bias="none")
            self.model = get_peft_model(lm.model, config)

    # -- the meta-prompt --------------------------------------------------------------------

    def encode_meta_prompt(self, text: str) -> list[int]:
        """Ids of ``text`` as a user turn of the LM's chat format, ready for the reply; as plain
        text followed by ``Instruction:`` when the tokenizer has no chat template."""
        tokenizer = self.tokenizer
        if getattr(tokenizer, "chat_template", None):
            rendered = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False)
            return list(tokenizer(rendered, add_special_tokens=False).input_ids)
        return list(tokenizer(f"{text}\n\nInstruction:", add_special_tokens=True).input_ids)

    # -- sampling ---------------------------------------------------------------------------

    def sample(self, meta_prompt: Sequence[int], n: int, generator: torch.Generator | None = None, greedy: bool = False) -> Samples:
        """Write ``n`` instructions after ``meta_prompt`` (ids); ``greedy``: the argmax at every step."""
        with torch.inference_mode():
            cache, last = self._prefill(meta_prompt, n)
            finished = torch.zeros(n, dtype=torch.bool, device=self.device)
            written: list[torch.Tensor] = []
            stops = torch.tensor(self.stop_ids, device=self.device)
            logits = last
            for _ in range(self.max_new_tokens):
                if greedy:
                    token = logits.argmax(dim=-1)
                else:
                    probs = torch.softmax(logits.float() / self.temperature, dim=-1)
                    token = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(self.device)
                token = torch.where(finished, torch.full_like(token, self.pad_id), token)
                written.append(token)
                finished |= torch.isin(token, stops)
                if bool(finished.all()):
                    break
                out = self.model(input_ids=token[:, None], use_cache=True, **{self._cache_keyword: cache})
                logits = out.logits[:, -1]  # the cache object grew in place
        columns = torch.stack(written, dim=1).tolist()
        token_ids = [self._cut(row) for row in columns]
        return Samples(token_ids, [self.text(ids) for ids in token_ids])

    def text(self, token_ids: Sequence[int]) -> str:
        """The instruction a sample's ids spell."""
        return instruction_text(self.tokenizer.decode([t for t in token_ids if t not in self.stop_ids], skip_special_tokens=True))

    def _cut(self, row: list[int]) -> tuple[int, ...]:
        """A sample's ids up to and including its first stop token."""
        for position, token in enumerate(row):
            if token in self.stop_ids:
                return tuple(row[: position + 1])
        return tuple(row)

    @property
    def _cache_keyword(self) -> str:
        from rlprompt.scoring.prefix_cache import cache_keyword

        return cache_keyword(type(self.lm.model.base_model))

    def _prefill(self, meta_prompt: Sequence[int], rows: int):
        """The meta-prompt run once; its cache expanded to ``rows`` samples, and the next-token logits."""
        from transformers import DynamicCache

        ids = torch.tensor([list(meta_prompt)], device=self.device)
        cache = DynamicCache(config=self.lm.model.config)
        out = self.model(input_ids=ids, use_cache=True, **{self._cache_keyword: cache})
        data = [(layer.keys.expand(rows, *layer.keys.shape[1:]), layer.values.expand(rows, *layer.values.shape[1:])) for layer in cache.layers]
        return DynamicCache(ddp_cache_data=data, config=self.lm.model.config), out.logits[:, -1].expand(rows, -1)

    # -- log-probabilities, for the update ---------------------------------------------------

    def log_probs(self, meta_prompt: Sequence[int], samples: Sequence[Sequence[int]], adapters: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token log-probabilities of each sample after ``meta_prompt``, ``[n, T]``, and the
        mask of real (unpadded) tokens; with gradients unless under ``torch.no_grad``.

        Args:
            meta_prompt: Ids the samples were written after.
            samples: Each sample's ids.
            adapters: False: the untrained LM (adapters off), for the KL term.
        """
        context = self.model.disable_adapter() if (self.trainable and not adapters) else nullcontext()
        width = max(len(s) for s in samples)
        ids = torch.full((len(samples), width), self.pad_id, device=self.device)
        mask = torch.zeros(len(samples), width, device=self.device)
        for row, sample in enumerate(samples):
            ids[row, : len(sample)] = torch.tensor(list(sample), device=self.device)
            mask[row, : len(sample)] = 1.0
        with context:
            cache, first = self._prefill(meta_prompt, len(samples))
            # Right padding needs no attention mask: a causal model never lets a real token see
            # the padding after it, and padded positions are masked out of the loss.
            later = self.model(input_ids=ids[:, :-1], use_cache=True, **{self._cache_keyword: cache}).logits if width > 1 else None
        logits = first[:, None] if later is None else torch.cat([first[:, None], later], dim=1)
        log_probs = torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[..., None]).squeeze(-1)
        return log_probs * mask, mask

    # -- adapters ---------------------------------------------------------------------------

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def save_adapter(self, folder: Path) -> None:
        """The LoRA weights and config, PEFT's layout (``adapter_config.json``, ``adapter_model.safetensors``)."""
        # The embeddings are never trained: say so, rather than let PEFT look for a vocabulary change.
        self.model.save_pretrained(str(folder), save_embedding_layers=False)

    def load_adapter(self, folder: Path) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(self.model, load_file(str(Path(folder) / "adapter_model.safetensors"), device=str(self.device)))
