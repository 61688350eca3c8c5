"""``make test-gpu``: the whole test suite on the GPU present, then the peak device memory of a
Gemma-3-270M scoring pass at its memory bound.

The suite runs with ``RLPROMPT_DEVICE`` set to the GPU, so everything that loads a model with
``device="auto"`` runs there, in the dtype ``--dtype auto`` picks for it (or ``RLPROMPT_DTYPE``),
with the tolerances of that dtype (``tests/conftest.py``). The suite includes a GPU pass of every
search method, resume, transfer, calibration and variable length (``tests/rlprompt/test_devices.py``).

Then Gemma-3-270M scores every demo sentence with enough prompts for several passes at the bound
its scorer plans (:func:`rlprompt.devices.plan_scoring_memory`), on the plain path (a pass holds
exactly its tokens) and on the prefix-cache path, and the script reports the peak memory the CUDA
allocator saw beyond the weights, next to the plan. The numbers go to the terminal and to
``experiments/results/gpu_check.json``.

With no GPU it prints one line and exits 0. Run from the repository root::

    python -m experiments.gpu_check                     # what make test-gpu runs
    python -m experiments.gpu_check --skip-suite         # only the memory measurement
    python -m experiments.gpu_check --device cpu --skip-suite --max-batch-tokens 1024   # the code path, on the CPU

Exit code: the test suite's (0 when every test passed or there is no GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "experiments" / "results" / "gpu_check.json"
MODEL = "gemma3-270m"


def gpu_present() -> str | None:
    """The device ``--device auto`` resolves to when it is a GPU (CUDA or MPS), else None."""
    from rlprompt.devices import resolve_device

    device = resolve_device("auto")
    return None if device.type == "cpu" else str(device)


def run_suite(device: str, pytest_args: list[str]) -> dict:
    """The whole suite with ``device="auto"`` meaning ``device``; its output streams through."""
    env = {**os.environ, "RLPROMPT_DEVICE": device}
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *pytest_args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    tail: list[str] = []
    for line in process.stdout:
        print(line, end="", flush=True)
        tail = (tail + [line.strip()])[-5:]
    returncode = process.wait()
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)", " ".join(tail))}
    return {"returncode": returncode, "counts": counts, "wall_seconds": round(time.perf_counter() - start, 1)}


def memory_at_the_bound(device: str, max_batch_tokens: int | None = None) -> dict:
    """Peak allocator memory (beyond what was allocated before) of Gemma-3-270M scoring at its bound."""
    import torch

    from rlprompt.devices import dtype_name, free_memory_bytes, parameter_bytes, scoring_bytes_per_token
    from rlprompt.models import load_model
    from rlprompt.scoring import Scorer
    from rlprompt.tasks import load_task

    lm = load_model(MODEL, "auto", device)
    task = load_task("demo")
    sentences = [e.text for e in task.train + task.dev + task.test]
    cuda = lm.device.type == "cuda"
    token_bytes = scoring_bytes_per_token(lm.model.config, lm.dtype.itemsize)
    result = {
        "model": MODEL, "device": str(lm.device), "device_name": torch.cuda.get_device_name(lm.device) if cuda else lm.device.type,
        "dtype": dtype_name(lm.dtype), "weight_bytes": parameter_bytes(lm.model), "free_bytes_after_load": free_memory_bytes(lm.device),
        "planned_bytes_per_token": token_bytes,
    }
    for path, prefix_cache in (("plain", False), ("prefix_cache", True)):
        scorer = Scorer(lm, task.template, task.verbalizers, prefix_cache=prefix_cache, max_batch_tokens=max_batch_tokens)
        tokens_per_pair = max(len(pair.prefix) + len(pair.suffix) for pair in (scorer.encoder.encode(s, "it was very") for s in sentences))
        # Enough prompts for about three full passes at the bound.
        prompts = [f"it was very {i}" for i in range(max(1, 3 * scorer.max_batch_tokens // (tokens_per_pair * len(sentences))) + 1)]
        if cuda:
            torch.cuda.synchronize(lm.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(lm.device)
            before = torch.cuda.memory_allocated(lm.device)
        start = time.perf_counter()
        scorer.class_logits(prompts, sentences)
        if cuda:
            torch.cuda.synchronize(lm.device)
        peak = torch.cuda.max_memory_allocated(lm.device) - before if cuda else None
        result[path] = {
            "batch_tokens": scorer.max_batch_tokens, "prefix_cache_bytes": scorer.prefix_cache_bytes, "pairs": len(prompts) * len(sentences),
            "seconds": round(time.perf_counter() - start, 2), "peak_bytes": peak,
            "planned_pass_bytes": scorer.max_batch_tokens * token_bytes,
        }
        del scorer
    return result


def _gib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**30:.2f} GiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=None, help="run here instead of the GPU auto finds (e.g. cpu, to check the code path)")
    parser.add_argument("--skip-suite", action="store_true", help="only the memory measurement")
    parser.add_argument("--max-batch-tokens", type=int, default=None, help="override the planned bound (a quick check on the CPU)")
    parser.add_argument("--out", type=Path, default=RESULT)
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments, after --")
    args = parser.parse_args(argv)
    device = args.device or gpu_present()
    if device is None:
        import torch

        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        print(f"make test-gpu: no GPU on this machine (torch {torch.__version__}, {build}, sees no CUDA or MPS device); nothing was run")
        return 0
    suite = None if args.skip_suite else run_suite(device, args.pytest_args)
    memory = memory_at_the_bound(device, args.max_batch_tokens)
    report = {"suite": suite, "memory": memory}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\n== make test-gpu on {memory['device_name']} ({memory['device']}), {memory['dtype']}")
    if suite is not None:
        print(f"suite: {suite['counts']} in {suite['wall_seconds']} s (exit {suite['returncode']})")
    for path in ("plain", "prefix_cache"):
        row = memory[path]
        print(
            f"{MODEL} {path}: bound {row['batch_tokens']} tokens, {row['pairs']} pairs in {row['seconds']} s, "
            f"peak beyond the weights {_gib(row['peak_bytes'])} (planned pass {_gib(row['planned_pass_bytes'])}, "
            f"prefix cache up to {_gib(row['prefix_cache_bytes'])}); weights {_gib(memory['weight_bytes'])}"
        )
    print(f"written: {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return suite["returncode"] if suite is not None else 0


if __name__ == "__main__":
    sys.exit(main())
