"""Where models run and in what precision: ``--device`` and ``--dtype``, each resolved in one place.

``auto`` is resolved here and nowhere else:

* device ``auto``: CUDA if present, then Apple MPS, then the CPU;
* dtype ``auto``: bf16 where the device multiplies bf16 natively (a CUDA GPU of compute
  capability 8.0 or newer, i.e. Ampere on, never emulated bf16; a CPU with AMX or AVX512-BF16,
  where bf16 scoring is 2-3x faster than fp32), else fp32.
  MPS stays in fp32: its bf16 support depends on the macOS version and has not been measured.

The environment variables ``RLPROMPT_DEVICE`` and ``RLPROMPT_DTYPE`` replace what ``auto``
resolves to, for every command and the API alike: the test suite uses them to run the whole
suite in fp32 and in bf16 on any machine, so a machine without fast bf16 still exercises the
bf16 path. An explicit ``--device``/``--dtype`` always wins over them.

The name checks import nothing heavy, so a bad setting fails before torch or a model loads.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rlprompt.errors import RLPromptError

if TYPE_CHECKING:
    import torch

DTYPES = ("auto", "fp32", "bf16")
"""Valid ``--dtype`` values."""
DEVICES = "auto, cpu, cuda, cuda:N, mps"
"""Valid ``--device`` values, as shown in error messages."""
DTYPE_ENV = "RLPROMPT_DTYPE"
DEVICE_ENV = "RLPROMPT_DEVICE"

_DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")

# The most tokens (cached ones included) worth putting in one scoring forward pass, whatever
# the memory: on the CPU larger batches measured no faster (memory bandwidth); a GPU wants larger
# batches to fill it. The bound a scorer uses is the smaller of this and what the model's
# memory allows (plan_scoring_memory).
_BATCH_TOKENS = {"cpu": 16384, "mps": 16384, "cuda": 65536}


def check_device_name(name: str) -> None:
    """Raise unless ``name`` is a device spelling rlprompt accepts (availability is not checked)."""
    if not isinstance(name, str) or not _DEVICE_PATTERN.fullmatch(name):
        raise RLPromptError(f"unknown device '{name}'; valid: {DEVICES}")


def check_dtype_name(name: str) -> None:
    """Raise unless ``name`` is one of :data:`DTYPES`."""
    if name not in DTYPES:
        raise RLPromptError(f"unknown dtype '{name}'; valid: {', '.join(DTYPES)}")


def _override(variable: str, valid: tuple[str, ...] | None = None) -> str | None:
    value = os.environ.get(variable, "").strip()
    if not value or value == "auto":
        return None
    if valid is not None and value not in valid:
        raise RLPromptError(f"environment variable {variable} is '{value}'; valid: {', '.join(valid)} (or unset)")
    return value


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AMX or AVX512-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for ``name`` (see the module docstring for ``auto``).

    Raises:
        RLPromptError: On an unknown name, or a device this machine does not have.
    """
    import torch

    check_device_name(name)
    if name == "auto":
        override = _override(DEVICE_ENV)
        if override is not None:
            check_device_name(override)
            name = override
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= count:
            have = f"{count} CUDA device(s)" if count else "no CUDA device (torch.cuda.is_available() is False)"
            raise RLPromptError(f"device '{name}' is not available: this machine has {have}; try --device cpu or auto")
    if name == "mps" and not _mps_available():
        raise RLPromptError("device 'mps' is not available (torch.backends.mps.is_available() is False); try --device cpu or auto")
    return torch.device(name)


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


NATIVE_BF16_CAPABILITY = (8, 0)
"""The first CUDA compute capability with bf16 tensor cores (Ampere). Older cards (V100: 7.0,
T4 and RTX 20xx: 7.5) run bf16 by emulation, slower than fp32."""


def bf16_is_native(device_type: str, cuda_capability: tuple[int, int] | None = None, cpu_bf16: bool = False) -> bool:
    """Whether bf16 is native on a device, from what the hardware reports (a pure function).

    Args:
        device_type: ``cpu``, ``cuda`` or ``mps``.
        cuda_capability: The CUDA device's compute capability, e.g. ``(8, 0)``; emulated bf16
            (which ``torch.cuda.is_bf16_supported()`` counts by default) is not native.
        cpu_bf16: Whether the CPU has AMX or AVX512-BF16.
    """
    if device_type == "cuda":
        return cuda_capability is not None and tuple(cuda_capability) >= NATIVE_BF16_CAPABILITY
    if device_type == "cpu":
        return cpu_bf16
    # MPS: bf16 support depends on the macOS version and has not been measured.
    return False


def has_fast_bf16(device: torch.device) -> bool:
    """Whether bf16 matrix products are native (and so faster than fp32) on ``device``.

    A CUDA device is asked about itself (``cuda:1`` reports cuda:1's capability; a bare
    ``cuda`` is the current device, where a model moved to ``cuda`` goes).
    """
    import torch

    if device.type == "cuda":
        return bf16_is_native("cuda", cuda_capability=torch.cuda.get_device_capability(device))
    if device.type == "cpu":
        return bf16_is_native("cpu", cpu_bf16=cpu_has_fast_bf16())
    return bf16_is_native(device.type)


def resolve_dtype(name: str = "auto", device: torch.device | None = None) -> torch.dtype:
    """``fp32``, ``bf16``, or ``auto`` (bf16 where ``device`` has fast bf16; default device: the CPU).

    Raises:
        RLPromptError: On an unknown name, or an invalid ``RLPROMPT_DTYPE``.
    """
    import torch

    check_dtype_name(name)
    if name == "auto":
        name = _override(DTYPE_ENV, DTYPES[1:]) or "auto"
    if name == "auto":
        return torch.bfloat16 if has_fast_bf16(device or torch.device("cpu")) else torch.float32
    return torch.bfloat16 if name == "bf16" else torch.float32


def release_device_memory(device: str | torch.device) -> None:
    """Free what unreferenced models left behind: collect reference cycles (transformers modules
    have them), then hand the CUDA allocator's cached blocks back, so the next model loads
    into a free device. A no-op on a device that was never initialised."""
    import gc

    import torch

    gc.collect()
    if str(device).startswith(("cuda", "auto")) and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    backend = getattr(torch, "mps", None)
    if str(device) in ("mps", "auto") and _mps_available() and backend is not None:
        backend.empty_cache()


def dtype_name(dtype: torch.dtype) -> str:
    """``fp32`` or ``bf16``: how prompt files and reports name a dtype."""
    import torch

    return {torch.float32: "fp32", torch.bfloat16: "bf16"}.get(dtype, str(dtype).removeprefix("torch."))


HOST_ALLOCATOR_ENV = "RLPROMPT_HOST_ALLOCATOR"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers
_allocator_tuned = False


def tune_host_allocator() -> bool:
    """Keep freed tensor memory in the process for reuse instead of handing it back to the OS.

    Scoring on the CPU allocates and frees the same large tensors (key/value rows of the
    cached prefixes, tens of MB each) for every batch. glibc serves blocks above its mmap
    threshold with fresh pages and gives trimmed heap back to the OS, so every batch pays
    page faults to get the memory again: 2.6 million faults (10 GB of zeroed pages) per
    scoring call of 16 prompts x 32 SST-2 inputs when that happens, against about 100 with
    this tuning, and whether it happens depends on the order of earlier allocations (a
    second call could run 2-3x slower than the first, cache building included). Raising the
    mmap threshold to its 32 MB maximum and never trimming makes freed blocks reusable.

    Called once per process by :class:`rlprompt.scoring.Scorer` on the CPU; a no-op off glibc
    or when ``RLPROMPT_HOST_ALLOCATOR=system``. Returns whether the tuning is in effect.
    """
    global _allocator_tuned
    if _allocator_tuned or os.environ.get(HOST_ALLOCATOR_ENV, "").strip() == "system":
        return _allocator_tuned
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        _allocator_tuned = bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
        )
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows): nothing to tune
        _allocator_tuned = False
    return _allocator_tuned


def default_batch_tokens(device: torch.device) -> int:
    """The most tokens per scoring forward pass worth batching on ``device`` (memory permitting)."""
    return _BATCH_TOKENS.get(device.type, _BATCH_TOKENS["cpu"])


# -- memory: how many tokens a scoring pass may hold, from the model and the free memory --------

MEMORY_SAFETY = 0.8
"""Share of the memory left free beside the weights that scoring plans to use; the rest is slack
for the allocator's fragmentation, the CUDA context and the small tensors not counted."""
PREFIX_CACHE_SHARE = 0.5
"""Share of the planned memory the cached prefixes may hold; one forward pass gets the rest."""
MIN_BATCH_TOKENS = 256
"""A scoring pass that cannot hold this many tokens does not fit (a few examples at a time)."""
ATTENTION_KEYS = 512
"""Keys per query the attention term of a token's cost assumes (Gemma-3's sliding window; the
paper's tasks stay well under it). Eager attention keeps fp32 scores of every head per key."""
PLANNED_PREFIX_TOKENS = 64
"""Prefix length a block of cached examples is sized for (SST-2's are about 30 tokens)."""


def free_memory_bytes(device: torch.device) -> int | None:
    """Bytes this process could still allocate on ``device`` (None: not known).

    CUDA: free on the card plus what torch's allocator holds unused; MPS: the recommended
    working set less what the driver has allocated; the CPU: ``MemAvailable``.
    """
    import torch

    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type == "mps":
        backend = getattr(torch, "mps", None)
        if backend is None or not hasattr(backend, "recommended_max_memory"):
            return None
        return max(0, int(backend.recommended_max_memory() - backend.driver_allocated_memory()))
    if device.type == "cpu":
        try:
            meminfo = Path("/proc/meminfo").read_text().splitlines()
        except OSError:
            return None
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def parameter_bytes(model) -> int:
    """Bytes of a model's weights (parameters and buffers) in their current dtype."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def kv_bytes_per_token(config, dtype_bytes: int) -> int:
    """Bytes of one token's keys and values over every layer (what a cached prefix token costs)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return 2 * text.num_hidden_layers * kv_heads * head_dim * dtype_bytes


def scoring_bytes_per_token(config, dtype_bytes: int) -> int:
    """Peak bytes one token of a scoring forward pass costs.

    Twice its keys/values over every layer (the pass's gathered copy of the cached prefix
    rows, and the cache as it grows by the suffix), plus one layer's transient activations:
    about eight hidden-size vectors (residual, norm, q/k/v/output projections), three
    intermediate-size ones (the gated MLP) and fp32 attention scores over
    :data:`ATTENTION_KEYS` keys per head.
    """
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = text.hidden_size
    intermediate = getattr(text, "intermediate_size", None) or getattr(text, "n_inner", None) or 4 * hidden
    transient = (8 * hidden + 3 * intermediate) * dtype_bytes + text.num_attention_heads * ATTENTION_KEYS * 4
    return 2 * kv_bytes_per_token(config, dtype_bytes) + transient


@dataclass(frozen=True)
class MemoryPlan:
    """How much memory scoring with one model may use on its device."""

    batch_tokens: int
    """Tokens (cached ones included) in one scoring forward pass."""
    prefix_cache_bytes: int | None
    """Most bytes the cached prefixes may hold; None: not bounded by memory (free memory unknown)."""


def plan_scoring_memory(
    free_bytes: int | None, weight_bytes: int, token_bytes: int, most_tokens: int, what: str = "the model", strict: bool = True
) -> MemoryPlan:
    """The scoring memory plan for a model: a pure function of what the device and model report.

    ``budget = MEMORY_SAFETY * (free_bytes - weight_bytes)``; the cached prefixes may hold
    ``PREFIX_CACHE_SHARE * budget`` and one forward pass the rest:
    ``batch_tokens = min(most_tokens, (1 - PREFIX_CACHE_SHARE) * budget // token_bytes)``.

    Args:
        free_bytes: Free device memory with this model's weights not on it (None: unknown;
            then only ``most_tokens`` bounds a pass).
        weight_bytes: The model's weights in the dtype they run in.
        token_bytes: Peak bytes per token of a pass (:func:`scoring_bytes_per_token`).
        most_tokens: The most tokens worth batching on the device (:func:`default_batch_tokens`).
        what: The model and device, for the error message.
        strict: Raise when a pass of :data:`MIN_BATCH_TOKENS` does not fit; else plan that
            many tokens anyway (the CPU, where the OS can page rather than fail).

    Raises:
        RLPromptError: ``strict`` and a pass of :data:`MIN_BATCH_TOKENS` tokens does not fit beside the weights.
    """
    if free_bytes is None:
        return MemoryPlan(batch_tokens=most_tokens, prefix_cache_bytes=None)
    budget = MEMORY_SAFETY * (free_bytes - weight_bytes)
    tokens = int((1 - PREFIX_CACHE_SHARE) * budget // token_bytes) if budget > 0 else 0
    if tokens < MIN_BATCH_TOKENS and not strict:
        return MemoryPlan(batch_tokens=min(most_tokens, MIN_BATCH_TOKENS), prefix_cache_bytes=max(0, int(PREFIX_CACHE_SHARE * budget)))
    if tokens < MIN_BATCH_TOKENS:
        needed = weight_bytes + math.ceil(MIN_BATCH_TOKENS * token_bytes / ((1 - PREFIX_CACHE_SHARE) * MEMORY_SAFETY))
        raise RLPromptError(
            f"{what} does not fit: its weights take {_gib(weight_bytes)} and scoring needs about {_gib(needed)} in all, "
            f"but {_gib(free_bytes)} are free; try --dtype bf16, a smaller model, or --device cpu"
        )
    return MemoryPlan(batch_tokens=min(most_tokens, tokens), prefix_cache_bytes=int(PREFIX_CACHE_SHARE * budget))


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def scoring_memory(model, device: torch.device, name: str, weights_on_device: bool = True) -> MemoryPlan:
    """:func:`plan_scoring_memory` for ``model`` on ``device``, with the free memory asked of the device.

    Args:
        model: The model, in the dtype it runs in.
        device: Where it runs.
        name: The model's spec, for the error message.
        weights_on_device: Whether the weights are already on ``device`` (so the free memory
            the device reports excludes them).
    """
    weights = parameter_bytes(model)
    free = free_memory_bytes(device)
    if free is not None and weights_on_device:
        free += weights
    dtype_bytes = next(model.parameters()).element_size()
    return plan_scoring_memory(
        free, weights, scoring_bytes_per_token(model.config, dtype_bytes), default_batch_tokens(device), f"model '{name}' on {device}",
        strict=device.type != "cpu",
    )


def check_fits_on_device(model, device: torch.device, name: str) -> None:
    """Raise, in one line, if ``model`` (loaded on the host) would not fit on ``device`` with
    room for a scoring pass: called before its weights move there. No check for the CPU,
    where the weights already are."""
    if device.type != "cpu":
        scoring_memory(model, device, name, weights_on_device=False)
