"""Benchmark: how fast can a frozen LM score a batch of prompts on a task's train set?

One RLPrompt training step scores 16 prompts x every train input. This script times four ways
of doing it on SmolLM2-135M, on the paper's 16-shot splits (SST-2: 32 train sentences,
AG News: 64 train texts):

(a) naive    the paper's way, re-implemented here as the baseline: one batch of all inputs per
             prompt, full forward ``model(input_ids, attention_mask).logits`` (whole vocabulary
             at every position), fp32, then the read-out position.
(b) batched  every (prompt x input) pair together in token-bounded batches, still full-vocab
             logits at every position, fp32.
(c) scorer   the library's :class:`rlprompt.scoring.Scorer` (prefix KV cache, verbalizer-only
             read-out), fp32. *cold* is the first call on a fresh Scorer (it computes the train
             set's prefix cache); *warm* is a later call that reuses it, as training does.
(d) scorer   as (c) with bfloat16 weights.

(a), (b) and (c) must agree: the argmax class of each (prompt, input) pair matches on >= 99% of
pairs. Each path is warmed up once, then timed ``--repeats`` times with fresh random prompts
(median reported). FLOPs are counted from the token positions that actually ran through the
model (padding included), and compared with 2048^3 ``torch.matmul`` and ``F.linear`` products
measured in the same run (bf16 ones bounded in time). The headline speed-up is the warm path
in the machine's best dtype (what ``--dtype auto`` picks here) over (a).

Two more measurements, in the same run:

* **bf16 vs fp32 agreement** on the SST-2 *test* set (16 prompts x 1,821 sentences): the share
  of (prompt, sentence) pairs given the same class, and the Spearman correlation of the 16
  prompts' gap rewards.
* **Training steps**: ``rlprompt train`` on SST-2 (16 prompts a step: sampling, scoring on
  train, the PPO update, dev scoring of new top-k entrants) in each dtype; the median of
  ``--train-steps`` step times, read from the run's ``history.json``.

Run from the repository root::

    python -m experiments.bench_scoring                 # full benchmark, both tasks
    python -m experiments.bench_scoring --quick --tasks sst-2

Exit codes: 0 ok, 1 a path disagreed with the baseline, 2 bad input (e.g. no shared data).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from rlprompt.artifact import write_json_atomic
from rlprompt.batching import left_pad, pad_token_id
from rlprompt.devices import dtype_name, resolve_dtype, tune_host_allocator
from rlprompt.envs.vocab import ActionVocabulary, build_vocabulary
from rlprompt.errors import RLPromptError
from rlprompt.models import LoadedModel, load_model
from rlprompt.scoring.encoding import TemplateEncoder, verbalizer_token_ids
from rlprompt.scoring.local import Scorer
from rlprompt.tasks import Task, load_task

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = ROOT.parent / "shared" / "data" / "16-shot"
DEFAULT_JSON = ROOT / "experiments" / "results" / "bench_scoring.json"
TASKS = ("sst-2", "agnews")
SPLIT = "16-42"
MODEL = "smollm2-135m"
NUM_PROMPTS = 16
PROMPT_LENGTH = 5
MIN_AGREEMENT = 0.99
LEGACY_CACHE_KEYWORD = "past_key_values"
"""The KV cache's keyword before transformers renamed it to ``cache``."""
MATMUL_SIZE = 2048
SECTIONS = ("scoring", "agreement", "training", "prompt-first", "grpo")
INSTRUCTION_TOKENS = 48
"""Tokens of each prompt in the prompt-first measurement (an instruction writer's longest)."""
PROMPT_FIRST_TEMPLATE = "{prompt}\nReview: {sentence}\nSentiment: {mask}"
PROMPT_FIRST_VERBALIZERS = (" negative", " positive")
EXACTNESS_SENTENCES = 128
"""Sentences on which the prompt-first paths are also compared in fp32."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 timed repeat per path")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS, help="tasks to benchmark")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the results")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="folder holding <task>/16-42")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per path (default 3, 1 with --quick)")
    parser.add_argument("--batch-tokens", type=int, default=16384, help="token bound of one forward pass in (b), (c), (d)")
    parser.add_argument("--no-bf16", dest="run_bf16", action="store_false", help="skip path (d) and the bf16 measurements")
    parser.add_argument("--train-steps", type=int, default=20, help="timed training steps per dtype (0: skip)")
    parser.add_argument("--no-agreement", dest="agreement", action="store_false", help="skip the bf16/fp32 agreement on SST-2 test")
    parser.add_argument("--scorer-only", action="store_true", help="skip the full-vocabulary paths (a) and (b): the Scorer's cold and warm calls only")
    parser.add_argument("--bf16-peak-budget", type=float, default=20.0, help="seconds allowed per bf16 peak measurement")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random prompts")
    parser.add_argument(
        "--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS,
        help="what to measure (default: all): token-prompt scoring paths, bf16 agreement, token-RL training steps, "
        "prompt-first scoring (the prompt cache against the plain path), GRPO steps of the instruction writer",
    )
    parser.add_argument("--prompt-first-prompts", type=int, default=2, help="48-token prompts scored on SST-2 test by each prompt-first path")
    parser.add_argument("--prompt-first-sentences", type=int, default=None, help="score only the first N test sentences in the prompt-first section (default: all)")
    parser.add_argument("--grpo-steps", type=int, default=5, help="GRPO steps per dtype (the first, with warm-up, is not in the median)")
    parser.add_argument("--grpo-child", nargs=2, metavar=("DTYPE", "JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    return args


# -- machine facts and matmul peaks ---------------------------------------------------------


def machine_facts() -> dict:
    """CPU model, the CPU flags that decide bf16 speed, torch version and thread count."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines() if cpuinfo.exists() else []

    def first(key: str) -> str:
        return next((line.split(":", 1)[1].strip() for line in lines if line.split(":", 1)[0].strip() == key), "")

    flags = set(first("flags").split())
    import transformers

    return {
        "cpu_model": first("model name") or platform.processor() or "unknown",
        "amx_bf16": "amx_bf16" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "avx512f": "avx512f" in flags,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        # Other processes skew every number here; the load average tells whether there were any.
        "load_average_at_start": list(os.getloadavg()),
        "python": platform.python_version(),
    }


def matmul_peak(dtype: torch.dtype, repeats: int, budget_seconds: float, op: str = "matmul") -> dict:
    """Median FLOP/s of an n x n x n product (n = 2048), at torch's default thread count.

    ``op="matmul"`` times ``torch.matmul(a, b)``; ``op="linear"`` times
    ``torch.nn.functional.linear(a, b)`` (``a @ b.T``), the call every ``nn.Linear`` of the
    model makes, which can take a different (oneDNN) kernel, notably for bf16.

    Sizes step up from 256 to n, each product timed once (the last one doubles as the warm-up),
    and stop below n when the next size, predicted at 16x the last time (8x the work, a 2x
    margin), would not fit in what is left of ``budget_seconds`` (slow bf16 without
    AMX/AVX512-BF16). Then repeats run at the reached size until ``repeats`` or the budget.
    """
    product = torch.matmul if op == "matmul" else torch.nn.functional.linear
    started = time.perf_counter()
    size = 256
    while True:
        a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
        tick = time.perf_counter()
        product(a, b)
        seconds = [time.perf_counter() - tick]
        remaining = budget_seconds - (time.perf_counter() - started)
        if size >= MATMUL_SIZE or 16 * seconds[0] > remaining:
            break
        size *= 2
    warm_up_only = True
    while len(seconds) < repeats + 1 and time.perf_counter() - started < budget_seconds:
        tick = time.perf_counter()
        product(a, b)
        seconds.append(time.perf_counter() - tick)
        warm_up_only = False
    timed = seconds if warm_up_only else seconds[1:]
    median = statistics.median(timed)
    return {
        "op": op,
        "dtype": str(dtype).removeprefix("torch."),
        "size": size,
        "repeats": len(timed),
        "seconds": median,
        "flop_per_s": 2 * size**3 / median,
        "budget_seconds": budget_seconds,
        "budget_exhausted": len(timed) < repeats,
    }


# -- prompts ----------------------------------------------------------------------------------


class PromptSource:
    """Sets of 16 random 5-token prompts from the ``words`` vocabulary, seeded.

    ``check`` is the set every path scores first (their outputs are compared); ``fresh()``
    draws a new set, so no timed call reuses another call's prompts.
    """

    def __init__(self, vocab: ActionVocabulary, seed: int) -> None:
        self.vocab = vocab
        self.rng = np.random.default_rng(seed)
        self.check = self.fresh()

    def fresh(self, count: int = NUM_PROMPTS) -> list[str]:
        actions = self.rng.integers(0, self.vocab.size, size=(count, PROMPT_LENGTH))
        return [self.vocab.decode(row) for row in actions]


# -- FLOP accounting ------------------------------------------------------------------------


class BodyTokenCounter:
    """Counts the token positions (padding included) run through the transformer body.

    A forward pre-hook on ``model.base_model`` sees every call: the full causal-LM forward of
    (a)/(b) and the Scorer's direct ``base_model`` calls (prefixes and suffixes) alike.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.tokens = 0
        self.handle = model.base_model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            ids = kwargs["inputs_embeds"][..., 0]
        self.tokens += ids.numel()

    def take(self) -> int:
        """Tokens counted since the last call."""
        tokens, self.tokens = self.tokens, 0
        return tokens


@dataclass(frozen=True)
class ModelShape:
    """What the FLOP count needs to know about the model."""

    body_params: int
    """Parameters of the transformer body without the input embedding (a lookup, not a matmul)."""
    hidden: int
    vocab: int


def model_shape(lm: LoadedModel) -> ModelShape:
    body = lm.model.base_model
    embedding = body.get_input_embeddings().weight
    body_params = sum(p.numel() for p in body.parameters() if p is not embedding)
    head = lm.model.get_output_embeddings().weight
    return ModelShape(body_params=body_params, hidden=head.shape[1], vocab=head.shape[0])


def flops(shape: ModelShape, body_tokens: int, readout_positions: int, readout_width: int) -> int:
    """2 * body params * body tokens + 2 * hidden * read-out width * read-out positions."""
    return 2 * shape.body_params * body_tokens + 2 * shape.hidden * readout_width * readout_positions


# -- the paths --------------------------------------------------------------------------------


def encode_all(lm: LoadedModel, task: Task, prompts: Sequence[str], sentences: Sequence[str]) -> list[tuple[int, ...]]:
    """Token ids of every (prompt, sentence) pair, prompt-major, built exactly as the library does."""
    encoder = TemplateEncoder(lm.tokenizer, lm.kind, task.template)
    return [pair.prefix + pair.suffix for prompt in prompts for pair in (encoder.encode(s, prompt) for s in sentences)]


def naive_logits(lm: LoadedModel, task: Task, prompts: Sequence[str], sentences: Sequence[str]) -> torch.Tensor:
    """(a) One full forward per prompt over all inputs; verbalizer logits ``[P, E, C]``."""
    verbalizers = verbalizer_token_ids(lm.tokenizer, task.verbalizers, lm.name)
    sequences = encode_all(lm, task, prompts, sentences)
    out = []
    with torch.inference_mode():
        for p in range(len(prompts)):
            ids, mask = left_pad(sequences[p * len(sentences):(p + 1) * len(sentences)], pad_token_id(lm.tokenizer))
            logits = lm.model(input_ids=ids, attention_mask=mask).logits  # [E, T, vocab]
            out.append(logits[:, -1, verbalizers].float())
    return torch.stack(out)


def batched_logits(
    lm: LoadedModel, task: Task, prompts: Sequence[str], sentences: Sequence[str], max_batch_tokens: int
) -> torch.Tensor:
    """(b) All pairs, sorted by length, in batches of at most ``max_batch_tokens`` padded tokens."""
    verbalizers = verbalizer_token_ids(lm.tokenizer, task.verbalizers, lm.name)
    sequences = encode_all(lm, task, prompts, sentences)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    batches: list[list[int]] = [[]]
    for index in order:  # ascending length: the newest member is the longest
        if batches[-1] and len(sequences[index]) * (len(batches[-1]) + 1) > max_batch_tokens:
            batches.append([])
        batches[-1].append(index)
    logits = torch.empty(len(sequences), len(verbalizers))
    with torch.inference_mode():
        for batch in batches:
            ids, mask = left_pad([sequences[i] for i in batch], pad_token_id(lm.tokenizer))
            logits[batch] = lm.model(input_ids=ids, attention_mask=mask).logits[:, -1, verbalizers].float()
    return logits.view(len(prompts), len(sentences), -1)


# -- timing -----------------------------------------------------------------------------------


@dataclass
class Call:
    """One timed call: wall time and the work it did."""

    seconds: float
    body_tokens: int
    readout_positions: int
    minor_faults: int = 0
    """Page faults the call took: memory the allocator had to get from the OS again."""


_last_faults = 0


def timed(fn: Callable[[], torch.Tensor], counter: BodyTokenCounter) -> tuple[torch.Tensor, int, float]:
    global _last_faults
    counter.take()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    _last_faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return result, counter.take(), seconds


def time_full_vocab_path(
    fn: Callable[[list[str]], torch.Tensor], source: PromptSource, counter: BodyTokenCounter, repeats: int
) -> tuple[torch.Tensor, list[Call]]:
    """(a) or (b): warm up on one prompt, then ``repeats`` calls (the first on the check prompts)."""
    fn(source.fresh(1))
    check, calls = None, []
    for repeat in range(repeats):
        prompts = source.check if repeat == 0 else source.fresh()
        logits, tokens, seconds = timed(lambda: fn(prompts), counter)  # noqa: B023 (called at once)
        check = logits if check is None else check
        # Full-vocabulary logits at every position that went through the body.
        calls.append(Call(seconds, tokens, readout_positions=tokens))
    return check, calls


def time_scorer(
    lm: LoadedModel, task: Task, sentences: list[str], source: PromptSource, counter: BodyTokenCounter, args: argparse.Namespace,
    cache_keyword: str | None = None,
) -> tuple[torch.Tensor, list[Call], list[Call]]:
    """(c) or (d): per repeat a fresh Scorer, a cold call (builds the prefix cache), a warm call.

    ``cache_keyword`` passes the KV cache under that keyword instead of the one the Scorer reads
    off the model (the pre-rename ``past_key_values``, to time the cache API move in one run).
    """
    def new_scorer() -> Scorer:
        scorer = Scorer(lm, task.template, task.verbalizers, max_batch_tokens=args.batch_tokens)
        scorer.cache_keyword = cache_keyword or scorer.cache_keyword
        return scorer

    warm_up = new_scorer()
    warm_up.class_logits(source.fresh(1), sentences)
    warm_up.class_logits(source.fresh(1), sentences)
    check, cold, warm = None, [], []
    pairs = NUM_PROMPTS * len(sentences)
    for repeat in range(args.repeats):
        scorer = new_scorer()
        prompts = source.check if repeat == 0 else source.fresh()
        logits, tokens, seconds = timed(lambda: scorer.class_logits(prompts, sentences), counter)  # noqa: B023 (called at once)
        check = logits if check is None else check
        cold.append(Call(seconds, tokens, readout_positions=pairs, minor_faults=_last_faults))
        fresh = source.fresh()
        _, tokens, seconds = timed(lambda: scorer.class_logits(fresh, sentences), counter)  # noqa: B023 (called at once)
        warm.append(Call(seconds, tokens, readout_positions=pairs, minor_faults=_last_faults))
    return check, cold, warm


# -- reporting --------------------------------------------------------------------------------


@dataclass
class PathResult:
    """One row of the table."""

    path: str
    dtype: str
    seconds: float
    """Median over the timed repeats."""
    seconds_all: list[float]
    prompts_per_s: float
    inputs_per_s: float
    speedup: float | None
    """Over (a); None when (a) was skipped."""
    flops: int
    """Median FLOPs of one call (16 prompts x all inputs)."""
    flop_per_s: float
    peak_fraction: float | None
    """Of the ``torch.matmul`` peak of this dtype measured in this run."""
    linear_peak_fraction: float | None
    """Of the ``F.linear`` peak of this dtype measured in this run."""
    body_tokens: int
    readout_positions: int
    readout_width: int
    minor_faults: int
    """Median page faults of one call."""


def summarize(
    path: str, dtype: str, calls: list[Call], n_inputs: int, shape: ModelShape, readout_width: int,
    peak: dict | None, baseline_seconds: float | None,
) -> PathResult:
    seconds = statistics.median(c.seconds for c in calls)
    middle = sorted(calls, key=lambda c: c.seconds)[(len(calls) - 1) // 2]
    work = int(statistics.median(flops(shape, c.body_tokens, c.readout_positions, readout_width) for c in calls))
    flop_per_s = work / seconds
    return PathResult(
        path=path,
        dtype=dtype,
        seconds=seconds,
        seconds_all=[c.seconds for c in calls],
        prompts_per_s=NUM_PROMPTS / seconds,
        inputs_per_s=NUM_PROMPTS * n_inputs / seconds,
        speedup=baseline_seconds / seconds if baseline_seconds else None,
        flops=work,
        flop_per_s=flop_per_s,
        peak_fraction=flop_per_s / peak["matmul"]["flop_per_s"] if peak else None,
        linear_peak_fraction=flop_per_s / peak["linear"]["flop_per_s"] if peak else None,
        body_tokens=middle.body_tokens,
        readout_positions=middle.readout_positions,
        readout_width=readout_width,
        minor_faults=int(statistics.median(c.minor_faults for c in calls)),
    )


def agreement(reference: torch.Tensor, other: torch.Tensor) -> dict:
    """Share of pairs with the same argmax class, and the largest logit difference."""
    return {
        "argmax_agreement": (reference.argmax(-1) == other.argmax(-1)).float().mean().item(),
        "max_abs_logit_diff": (reference - other).abs().max().item(),
    }


def markdown_table(task: str, n_inputs: int, rows: list[PathResult]) -> str:
    lines = [
        f"### {task}: {NUM_PROMPTS} prompts x {n_inputs} inputs",
        "",
        "| path | dtype | s (median) | prompts/s | input-fwd/s | speed-up vs (a) | GFLOP¹ | GFLOP/s | % of matmul peak² | % of linear peak² | page faults |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        peak = f"{100 * r.peak_fraction:.1f}" if r.peak_fraction is not None else "–"
        linear = f"{100 * r.linear_peak_fraction:.1f}" if r.linear_peak_fraction is not None else "–"
        lines.append(
            f"| {r.path} | {r.dtype} | {r.seconds:.3f} | {r.prompts_per_s:.2f} | {r.inputs_per_s:.1f} | "
            f"{'–' if r.speedup is None else f'{r.speedup:.1f}x'} | {r.flops / 1e9:.1f} | {r.flop_per_s / 1e9:.1f} | {peak} | {linear} | {r.minor_faults:,} |"
        )
    return "\n".join(lines)


# -- one task ---------------------------------------------------------------------------------


def bench_task(
    task_name: str, args: argparse.Namespace, lm: LoadedModel, lm_bf16: LoadedModel | None,
    vocab: ActionVocabulary, shape: ModelShape, peaks: dict,
) -> dict:
    task = load_task(task_name, str(args.data_root / task_name / SPLIT))
    task.require("train")
    sentences = [example.text for example in task.train]
    n, classes = len(sentences), task.num_classes
    source = PromptSource(vocab, args.seed)
    counter = BodyTokenCounter(lm.model)
    print(f"[{task_name}] {n} inputs, {classes} classes; check prompts e.g. {source.check[0]!r}", file=sys.stderr)

    rows: list[PathResult] = []
    baseline = None
    if not args.scorer_only:
        print(f"[{task_name}] (a) naive ...", file=sys.stderr)
        logits_a, calls_a = time_full_vocab_path(lambda p: naive_logits(lm, task, p, sentences), source, counter, args.repeats)
        rows.append(summarize("(a) naive, per prompt", "fp32", calls_a, n, shape, shape.vocab, peaks["float32"], None))
        baseline = rows[0].seconds

        print(f"[{task_name}] (b) batched ...", file=sys.stderr)
        logits_b, calls_b = time_full_vocab_path(
            lambda p: batched_logits(lm, task, p, sentences, args.batch_tokens), source, counter, args.repeats
        )
        rows.append(summarize("(b) batched pairs", "fp32", calls_b, n, shape, shape.vocab, peaks["float32"], baseline))

    print(f"[{task_name}] (c) scorer fp32 ...", file=sys.stderr)
    logits_c, cold_c, warm_c = time_scorer(lm, task, sentences, source, counter, args)
    rows += [
        summarize("(c) Scorer, cold", "fp32", cold_c, n, shape, classes, peaks["float32"], baseline),
        summarize("(c) Scorer, warm", "fp32", warm_c, n, shape, classes, peaks["float32"], baseline),
    ]
    # (a) is the reference; without it (--scorer-only), (c) is.
    logits_a = logits_c if args.scorer_only else logits_a
    checks = {} if args.scorer_only else {"a_vs_b": agreement(logits_a, logits_b), "a_vs_c": agreement(logits_a, logits_c)}

    # The cache API move (transformers' past_key_values -> cache): the same scorer with the
    # cache passed under the old keyword, which this transformers still accepts with a warning.
    current = Scorer(lm, task.template, task.verbalizers).cache_keyword
    if current != LEGACY_CACHE_KEYWORD:
        print(f"[{task_name}] (c) scorer fp32, cache passed as {LEGACY_CACHE_KEYWORD}= ...", file=sys.stderr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            logits_legacy, cold_l, warm_l = time_scorer(lm, task, sentences, source, counter, args, LEGACY_CACHE_KEYWORD)
        rows += [
            summarize(f"(c) Scorer, cold, {LEGACY_CACHE_KEYWORD}=", "fp32", cold_l, n, shape, classes, peaks["float32"], baseline),
            summarize(f"(c) Scorer, warm, {LEGACY_CACHE_KEYWORD}=", "fp32", warm_l, n, shape, classes, peaks["float32"], baseline),
        ]
        checks["c_legacy_vs_c"] = agreement(logits_legacy, logits_c)
    counter.handle.remove()

    if lm_bf16 is not None:
        expected = (rows[-2].flops + rows[-1].flops) * (args.repeats + 1) / peaks["bfloat16"]["linear"]["flop_per_s"]
        print(f"[{task_name}] (d) scorer bf16 ... (at the bf16 linear peak: about {expected / 60:.0f} min)", file=sys.stderr)
        counter = BodyTokenCounter(lm_bf16.model)
        logits_d, cold_d, warm_d = time_scorer(lm_bf16, task, sentences, source, counter, args)
        counter.handle.remove()
        rows += [
            summarize("(d) Scorer, cold", "bf16", cold_d, n, shape, classes, peaks.get("bfloat16"), baseline),
            summarize("(d) Scorer, warm", "bf16", warm_d, n, shape, classes, peaks.get("bfloat16"), baseline),
        ]
        checks["a_vs_d"] = agreement(logits_a, logits_d)  # informational: bf16 may flip near-ties

    ok = all(checks[k]["argmax_agreement"] >= MIN_AGREEMENT for k in ("a_vs_b", "a_vs_c", "c_legacy_vs_c") if k in checks)
    print(markdown_table(task_name, n, rows))
    for name, check in checks.items():
        print(f"- agreement {name.replace('_', ' ')}: argmax {check['argmax_agreement']:.4f}, "
              f"max |logit diff| {check['max_abs_logit_diff']:.2e}")
    if not ok:
        print(f"- FAILED: a path agrees with its reference on fewer than {MIN_AGREEMENT:.0%} of pairs")
    print()
    return {
        "data": str(args.data_root / task_name / SPLIT),
        "n_inputs": n,
        "n_classes": classes,
        "verbalizers": task.verbalizers,
        "template": task.template.text,
        "check_prompts": source.check,
        "paths": [asdict(row) for row in rows],
        "agreement": checks,
        "agreement_ok": ok,
    }


# -- bf16 vs fp32, and training steps ---------------------------------------------------------


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    def ranks(values: Sequence[float]) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        order = values.argsort(kind="stable")
        ranked = np.empty(len(values))
        ranked[order] = np.arange(len(values))
        for value in np.unique(values):  # ties share their mean rank
            ranked[values == value] = ranked[values == value].mean()
        return ranked

    ra, rb = ranks(a), ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def dtype_agreement(lm: LoadedModel, lm_bf16: LoadedModel, args: argparse.Namespace, vocab: ActionVocabulary) -> dict:
    """Class decisions and per-prompt gap rewards of bf16 against fp32 on SST-2 test."""
    from rlprompt.rewards.classification import gap_rewards

    task = load_task("sst-2", str(args.data_root / "sst-2" / SPLIT))
    task.require("test")
    sentences = [e.text for e in task.test]
    labels = torch.tensor([e.label for e in task.test])
    prompts = PromptSource(vocab, args.seed + 1).check
    result: dict = {"task": "sst-2", "split": "test", "n_inputs": len(sentences), "n_prompts": len(prompts), "prompts": prompts}
    logits = {}
    for name, model in (("fp32", lm), ("bf16", lm_bf16)):
        print(f"[agreement] SST-2 test, {len(prompts)} prompts x {len(sentences)} sentences in {name} ...", file=sys.stderr)
        scorer = Scorer(model, task.template, task.verbalizers, max_batch_tokens=args.batch_tokens, keep_all_prefixes=True)
        started = time.perf_counter()
        logits[name] = scorer.class_logits(prompts, sentences)
        result[f"seconds_{name}"] = time.perf_counter() - started
    rewards = {name: gap_rewards(value, labels)[0].tolist() for name, value in logits.items()}
    result.update(
        same_class=(logits["fp32"].argmax(-1) == logits["bf16"].argmax(-1)).float().mean().item(),
        spearman_gap_reward=spearman(rewards["fp32"], rewards["bf16"]),
        max_abs_logit_diff=(logits["fp32"] - logits["bf16"]).abs().max().item(),
        gap_reward_fp32=rewards["fp32"],
        gap_reward_bf16=rewards["bf16"],
        accuracy_fp32=(logits["fp32"].argmax(-1) == labels).float().mean(dim=1).tolist(),
        accuracy_bf16=(logits["bf16"].argmax(-1) == labels).float().mean(dim=1).tolist(),
    )
    print(
        f"- bf16 vs fp32 on SST-2 test: same class on {100 * result['same_class']:.2f}% of "
        f"{len(prompts) * len(sentences)} pairs; Spearman of the {len(prompts)} prompts' gap rewards "
        f"{result['spearman_gap_reward']:.4f}; scoring took {result['seconds_fp32']:.0f} s (fp32) and "
        f"{result['seconds_bf16']:.0f} s (bf16)"
    )
    return result


def training_steps(dtype: str, args: argparse.Namespace) -> dict:
    """Median wall time of one training step (16 prompts, SST-2 16-shot), read from ``history.json``."""
    import json
    import tempfile

    from rlprompt.config import TrainConfig
    from rlprompt.train import train

    print(f"[training] {args.train_steps} steps in {dtype} ...", file=sys.stderr)
    with tempfile.TemporaryDirectory() as runs:
        config = TrainConfig(
            task="sst-2", data=str(args.data_root / "sst-2" / SPLIT), target_lm=MODEL, steps=args.train_steps + 1,
            dtype=dtype, device="cpu", runs_dir=runs, run_name="bench", evaluate_test=False, seed=args.seed,
        )
        started = time.perf_counter()
        train(config, progress_bar=False)
        total = time.perf_counter() - started
        history = json.loads((Path(runs) / "bench" / "history.json").read_text())
    # Step k's time runs from the end of step k - 1; the first step also carries the warm-up.
    ends = [row["seconds"] for row in history]
    steps = [b - a for a, b in zip(ends, ends[1:])]
    result = {
        "dtype": dtype, "timed_steps": len(steps), "median_step_seconds": statistics.median(steps),
        "step_seconds": steps, "first_step_seconds": ends[0], "run_seconds": total,
    }
    print(f"- training step ({dtype}): median {result['median_step_seconds']:.2f} s over {len(steps)} steps")
    return result


# -- prompt-first templates and the instruction writer ------------------------------------------


def instruction_like_prompts(lm: LoadedModel, vocab: ActionVocabulary, count: int, seed: int) -> list[str]:
    """``count`` prompts of exactly :data:`INSTRUCTION_TOKENS` tokens of ``lm``'s tokenizer, from random vocabulary words."""
    rng = np.random.default_rng(seed)
    prompts = []
    for _ in range(count):
        words = vocab.decode(rng.integers(0, vocab.size, size=2 * INSTRUCTION_TOKENS))
        ids = lm.tokenizer(words, add_special_tokens=False).input_ids[:INSTRUCTION_TOKENS]
        prompts.append(lm.tokenizer.decode(ids))
    return prompts


def prompt_first(args: argparse.Namespace, lm: LoadedModel, vocab: ActionVocabulary, lm_fp32: LoadedModel) -> dict:
    """48-token prompts before the input, on the SST-2 test set: the prompt cache against the
    plain path, in ``lm``'s dtype. The limit of the speed-up is the ratio of tokens run per pair,
    plain over cached (the input part still runs for every pair; each prompt runs once). The
    class logits of both paths are also compared in fp32 (``lm_fp32``) on the first
    :data:`EXACTNESS_SENTENCES` sentences, where only float rounding can tell them apart."""
    from experiments.fewshot import test_set

    task = load_task("sst-2", str(args.data_root / "sst-2" / SPLIT), template=PROMPT_FIRST_TEMPLATE, verbalizers=list(PROMPT_FIRST_VERBALIZERS))
    sentences = [example.text for example in test_set(task)][: args.prompt_first_sentences]
    prompts = instruction_like_prompts(lm, vocab, args.prompt_first_prompts, args.seed)
    encoder = TemplateEncoder(lm.tokenizer, lm.kind, task.template)
    heads = [len(encoder.encode(sentences[0], prompt, split_at="sentence").prefix) for prompt in prompts]
    tails = [len(encoder.encode(sentence, "", split_at="sentence").suffix) for sentence in sentences]
    plain_tokens = sum(head * len(sentences) + sum(tails) for head in heads)
    cached_tokens = sum(heads) + len(prompts) * sum(tails)
    limit = plain_tokens / cached_tokens
    print(f"[prompt-first] {len(prompts)} prompts of {INSTRUCTION_TOKENS} tokens x {len(sentences)} sentences in {dtype_name(lm.dtype)} ...", file=sys.stderr)
    timings, logits = {}, {}
    for name, cache in (("cached", True), ("plain", False)):
        scorer = Scorer(lm, task.template, task.verbalizers, max_batch_tokens=args.batch_tokens, prefix_cache=cache)
        scorer.class_logits(prompts[:1], sentences[:8])  # warm-up
        started = time.perf_counter()
        logits[name] = scorer.class_logits(prompts, sentences)
        timings[name] = time.perf_counter() - started
    speedup = timings["plain"] / timings["cached"]
    exact = [
        Scorer(lm_fp32, task.template, task.verbalizers, max_batch_tokens=args.batch_tokens, prefix_cache=cache).class_logits(prompts, sentences[:EXACTNESS_SENTENCES])
        for cache in (True, False)
    ]
    result = {
        "dtype": dtype_name(lm.dtype), "prompts": len(prompts), "sentences": len(sentences), "prompt_tokens": INSTRUCTION_TOKENS,
        "head_tokens": heads, "mean_tail_tokens": statistics.mean(tails),
        "plain_seconds": timings["plain"], "cached_seconds": timings["cached"], "speedup": speedup,
        "token_ratio_limit": limit, "share_of_limit": speedup / limit,
        "max_abs_logit_difference": float((logits["plain"] - logits["cached"]).abs().max()),
        "same_class": float((logits["plain"].argmax(-1) == logits["cached"].argmax(-1)).float().mean()),
        "fp32_max_abs_logit_difference": float((exact[0] - exact[1]).abs().max()),
        "fp32_pairs_compared": int(exact[0].shape[0] * exact[0].shape[1]),
    }
    print(
        f"- prompt-first: cached {timings['cached']:.1f} s, plain {timings['plain']:.1f} s: {speedup:.2f}x, limit {limit:.2f}x "
        f"({100 * result['share_of_limit']:.0f}% of it); max |logit difference| {result['max_abs_logit_difference']:.2e}, "
        f"same class on {100 * result['same_class']:.2f}% of pairs; in fp32 on {result['fp32_pairs_compared']} pairs the max "
        f"|logit difference| is {result['fp32_max_abs_logit_difference']:.2e}"
    )
    return result


def grpo_child(dtype: str, out: Path, args: argparse.Namespace) -> int:
    """One GRPO run in its own process (so its peak RSS is its own): ``rlprompt train --algo grpo``
    on SST-2 in the prompt-first template, 16 instructions a step; writes the step times and peak RSS."""
    import json
    import tempfile

    from rlprompt.config import TrainConfig
    from rlprompt.train import train

    with tempfile.TemporaryDirectory() as runs:
        config = TrainConfig(
            task="sst-2", data=str(args.data_root / "sst-2" / SPLIT), target_lm=MODEL, template=PROMPT_FIRST_TEMPLATE,
            verbalizers=list(PROMPT_FIRST_VERBALIZERS), algo="grpo", steps=args.grpo_steps, dtype=dtype, device="cpu",
            runs_dir=runs, run_name="bench", evaluate_test=False, greedy_every=0, seed=args.seed,
        )
        train(config, progress_bar=False)
        history = json.loads((Path(runs) / "bench" / "history.json").read_text())
    ends = [row["seconds"] for row in history]
    steps = [b - a for a, b in zip(ends, ends[1:])]
    write_json_atomic(out, {
        "dtype": dtype, "first_step_seconds": ends[0], "step_seconds": steps, "median_step_seconds": statistics.median(steps),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "steps_for_1280_evaluations": 1280 // NUM_PROMPTS,
    })
    return 0


def grpo_steps(args: argparse.Namespace) -> dict:
    """The median GRPO step (generation + scoring + update) and the peak RSS, in fp32 and bf16, each in its own process."""
    import json
    import subprocess
    import tempfile

    results = {}
    for dtype in ("fp32", "bf16"):
        print(f"[grpo] {args.grpo_steps} steps in {dtype} ...", file=sys.stderr)
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "grpo.json"
            command = [sys.executable, "-m", "experiments.bench_scoring", "--grpo-child", dtype, str(out),
                       "--grpo-steps", str(args.grpo_steps), "--data-root", str(args.data_root), "--seed", str(args.seed)]
            subprocess.run(command, check=True, cwd=ROOT)
            results[dtype] = json.loads(out.read_text())
        row = results[dtype]
        estimate = row["median_step_seconds"] * row["steps_for_1280_evaluations"] / 60
        print(f"- GRPO step ({dtype}): median {row['median_step_seconds']:.1f} s, peak RSS {row['peak_rss_mib']:.0f} MiB; "
              f"1,280 evaluations at that pace: about {estimate:.0f} min")
    return results


# -- main -------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.grpo_child:
        return grpo_child(args.grpo_child[0], Path(args.grpo_child[1]), args)
    sys.stdout.reconfigure(line_buffering=True)  # tables and stderr progress lines in order
    missing = [t for t in args.tasks if not (args.data_root / t / SPLIT).is_dir()]
    if missing:
        print(f"error: shared data not found: {args.data_root / missing[0] / SPLIT} (expected ../shared/data/16-shot)", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    machine = machine_facts()
    # Every path gets the same allocator (the Scorer would tune it only once it is first built).
    machine["host_allocator_tuned"] = tune_host_allocator()

    # 1. Matmul peaks, in this run, with torch's default thread count.
    if "scoring" in args.sections:
        print("measuring matmul peaks ...", file=sys.stderr)
    peak_repeats = 3 if args.quick else 5
    peaks = {
        str(dtype).removeprefix("torch."): {
            op: matmul_peak(dtype, peak_repeats, budget, op) for op in ("matmul", "linear")
        }
        for dtype, budget in ((torch.float32, 20.0), (torch.bfloat16, args.bf16_peak_budget))
    } if "scoring" in args.sections else {}

    # 2. The target model (fp32; bf16 only for path (d)) and the prompt vocabulary.
    try:
        lm = load_model(MODEL, "fp32", "cpu")
        lm_bf16 = load_model(MODEL, "bf16", "cpu") if args.run_bf16 else None
    except RLPromptError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    shape = model_shape(lm)
    vocab = build_vocabulary(lm.tokenizer, "words")

    # 3. Every task, every path.
    results = {}
    best_dtype = dtype_name(resolve_dtype("auto"))
    for task_name in args.tasks if "scoring" in args.sections else ():
        try:
            results[task_name] = bench_task(task_name, args, lm, lm_bf16, vocab, shape, peaks)
        except RLPromptError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        rows = {(row["path"], row["dtype"]): row for row in results[task_name]["paths"]}
        best = rows.get(("(d) Scorer, warm" if best_dtype == "bf16" else "(c) Scorer, warm", best_dtype))
        if best is not None and not args.scorer_only:
            cold = rows[(best["path"].replace("warm", "cold"), best_dtype)]
            results[task_name]["best"] = {
                "dtype": best_dtype, "speedup_vs_paper": best["speedup"],
                "warm_over_cold": best["seconds"] / cold["seconds"],
            }
            print(f"- {task_name}: in {best_dtype} (this machine's best), the warm scorer is {best['speedup']:.1f}x the "
                  f"paper's way; warm/cold time {best['seconds'] / cold['seconds']:.2f}\n")

    # 4. bf16 against fp32 on SST-2 test, and training steps in each dtype.
    # 4. Prompt-first templates, in the machine's best dtype.
    prompt_first_result = None
    if "prompt-first" in args.sections:
        prompt_first_result = prompt_first(args, lm_bf16 if best_dtype == "bf16" and lm_bf16 is not None else lm, vocab, lm)
    agreement_result = None
    if lm_bf16 is not None and args.agreement and "agreement" in args.sections:
        agreement_result = dtype_agreement(lm, lm_bf16, args, vocab)
    del lm, lm_bf16  # the training runs load their own models
    training = {}
    for dtype in (("fp32", "bf16") if args.run_bf16 else ("fp32",)):
        if args.train_steps > 0 and "training" in args.sections:
            training[dtype] = training_steps(dtype, args)
    grpo = grpo_steps(args) if "grpo" in args.sections else None

    machine["load_average_at_end"] = list(os.getloadavg())
    for dtype, by_op in peaks.items():
        for op, peak in by_op.items():
            note = ", time budget hit" if peak["budget_exhausted"] else ""
            print(f"²{op} peak {dtype}: {peak['flop_per_s'] / 1e9:.1f} GFLOP/s "
                  f"({peak['size']}^3, median of {peak['repeats']}{note})")
    print("¹FLOPs = 2 x non-embedding params x token positions run through the body (padding and "
          "cached prefixes included) + 2 x hidden x (vocab, or #classes for the Scorer) x read-out "
          "positions; attention-score FLOPs (QK^T, AV) are ignored.")
    print(f"machine: {machine['cpu_model']}, {machine['torch_threads']} threads, torch {machine['torch']}; "
          f"amx_bf16={machine['amx_bf16']} avx512_bf16={machine['avx512_bf16']} avx512f={machine['avx512f']}")

    # 5. The JSON record, written atomically.
    write_json_atomic(args.json, {
        "benchmark": "bench_scoring",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": ["python", "-m", "experiments.bench_scoring", *sys.argv[1:]],
        "settings": {
            "quick": args.quick, "repeats": args.repeats, "batch_tokens": args.batch_tokens, "seed": args.seed,
            "num_prompts": NUM_PROMPTS, "prompt_length": PROMPT_LENGTH, "vocabulary": "words",
            "bf16_path": args.run_bf16, "scorer_only": args.scorer_only,
        },
        "machine": machine,
        "matmul_peak": peaks,
        "model": {"spec": MODEL, **asdict(shape)},
        "flops_note": "2*non-embedding params*body token positions (padding included) + 2*hidden*read-out width*"
                      "read-out positions; attention-score FLOPs ignored",
        "tasks": results,
        "bf16_agreement": agreement_result,
        "training_steps": training,
        "prompt_first": prompt_first_result,
        "grpo_steps": grpo,
    })
    print(f"wrote {args.json}", file=sys.stderr)
    return 0 if all(r["agreement_ok"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
