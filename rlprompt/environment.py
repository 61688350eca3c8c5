"""``rlprompt env``: what a bug report needs, read off this machine without loading a model.

Versions of the libraries that shape results, the CPU's bf16 flags, the accelerators torch
sees, what ``--device auto`` and ``--dtype auto`` resolve to here (and the environment
variables that override them), the model cache folder, and the offline models installed.
Nothing here touches the network or assembles a model file.
"""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = ("torch", "transformers", "tokenizers", "gymnasium", "stable-baselines3", "numpy", "evaluate")


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_bf16_flags() -> str:
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown (no /proc/cpuinfo)"
    found = [flag for flag in ("amx_bf16", "avx512_bf16") if flag in flags]
    return ", ".join(found) if found else "none (no AMX or AVX512-BF16: bf16 is slow here)"


def report() -> list[tuple[str, str]]:
    """(label, value) rows of the report, in print order."""
    import torch

    import rlprompt
    from rlprompt.devices import DEVICE_ENV, DTYPE_ENV, default_batch_tokens, dtype_name, resolve_device, resolve_dtype
    from rlprompt.errors import RLPromptError
    from rlprompt.models import OFFLINE_MODELS, cache_dir

    rows = [("rlprompt", rlprompt.__version__), ("python", platform.python_version())]
    rows += [(package, _version(package)) for package in PACKAGES]
    rows += [
        ("platform", platform.platform()),
        ("cpu", f"{_cpu_model()} ({os.cpu_count()} cores, torch uses {torch.get_num_threads()} threads)"),
        ("cpu bf16 flags", _cpu_bf16_flags()),
    ]
    if torch.cuda.is_available():
        names = ", ".join(f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count()))
        rows.append(("cuda", f"{names} (bf16 {'supported' if torch.cuda.is_bf16_supported() else 'not supported'})"))
    else:
        built = torch.version.cuda
        rows.append(("cuda", f"not available ({'torch built for CUDA ' + built if built else 'CPU-only torch build'})"))
    mps = getattr(torch.backends, "mps", None)
    rows.append(("mps", "available" if mps is not None and mps.is_available() else "not available"))
    overrides = ", ".join(f"{name}={os.environ[name]}" for name in (DEVICE_ENV, DTYPE_ENV) if os.environ.get(name))
    try:
        device = resolve_device("auto")
        dtype = dtype_name(resolve_dtype("auto", device))
        rows += [
            ("--device auto", str(device)),
            ("--dtype auto", dtype),
            ("batch tokens", f"{default_batch_tokens(device)} per scoring pass on {device.type}"),
        ]
    except RLPromptError as error:
        rows.append(("--device/--dtype auto", f"invalid override: {error}"))
    rows.append(("overrides", overrides or f"none ({DEVICE_ENV}, {DTYPE_ENV} unset)"))
    cache = cache_dir()
    converted = sorted(p.name for p in (cache / "converted").glob("*") if p.is_dir() and not p.name.startswith("."))
    source = "RLPROMPT_CACHE" if os.environ.get("RLPROMPT_CACHE") else "default; RLPROMPT_CACHE overrides it"
    rows.append(("model cache", f"{cache} ({source}); converted: {', '.join(converted) or 'none yet'}"))
    for alias, model in OFFLINE_MODELS.items():
        rows.append((f"model {alias}", "installed" if model.installed() else f"not installed (package {model.package})"))
    hub = "offline (HF_HUB_OFFLINE=1)" if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True") else "online use allowed (HF_HUB_OFFLINE unset)"
    rows.append(("hugging face hub", hub))
    return rows


def format_report(rows: list[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)
