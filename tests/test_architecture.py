"""Module structure: a layer order over every module, and no import cycles.

core < rewards < envs < policies < orchestration: a module imports only from its own layer or
those below it (at any depth of the file, lazy imports included). Every module must be placed
in a layer, so a new module is placed on purpose.
"""

from __future__ import annotations

from pathlib import Path

from tests.imports import imported_modules

ROOT = Path(__file__).resolve().parents[1]
# Repository folder -> the package it installs as (setup.cfg's package_dir).
FOLDERS = {"rlprompt": "rlprompt", "envs": "rlprompt.envs", "policies": "rlprompt.policies", "rewards": "rlprompt.rewards"}
LAYERS = ("core", "rewards", "envs", "policies", "orchestration")
ORCHESTRATION = {
    "rlprompt.builder", "rlprompt.cli", "rlprompt.config", "rlprompt.environment", "rlprompt.search",
    "rlprompt.search.base", "rlprompt.search.random_search", "rlprompt.search.sb3", "rlprompt.search.sql", "rlprompt.train",
    "rlprompt.search.text", "rlprompt.search.ape", "rlprompt.search.opro", "rlprompt.search.grpo",
}
"""What wires the layers below into runs and commands."""
CORE = {
    "rlprompt", "rlprompt.artifact", "rlprompt.batching", "rlprompt.defaults", "rlprompt.devices", "rlprompt.errors",
    "rlprompt.evaluation", "rlprompt.export", "rlprompt.meta_prompt", "rlprompt.metrics", "rlprompt.models", "rlprompt.perplexity",
    "rlprompt.scoring", "rlprompt.scoring.base", "rlprompt.scoring.calibration", "rlprompt.scoring.encoding",
    "rlprompt.scoring.factory", "rlprompt.scoring.fake", "rlprompt.scoring.local", "rlprompt.scoring.openai", "rlprompt.scoring.prefix_cache", "rlprompt.selection",
    "rlprompt.tasks", "rlprompt.template", "rlprompt.transfer",
}
"""Models, tasks, scoring and artifacts: usable without any RL."""


def layer(module: str) -> str:
    for package in ("rewards", "envs", "policies"):
        if module == f"rlprompt.{package}" or module.startswith(f"rlprompt.{package}."):
            return package
    if module in ORCHESTRATION:
        return "orchestration"
    if module in CORE:
        return "core"
    raise AssertionError(f"module {module} is in no layer: add it to CORE or ORCHESTRATION in tests/test_architecture.py")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    parts = [*FOLDERS[parts[0]].split("."), *parts[1:]]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Project module -> project modules it imports (at any depth of the file)."""
    files = {_module_name(p): p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        graph[name] = {t for t in imported_modules(path, members=True) if t in files and t != name}
    return graph


def test_every_module_has_a_layer_and_imports_only_downwards() -> None:
    graph = import_graph()
    assert len(graph) > 30 and "rlprompt.envs.vocab" in graph
    upward = [
        f"{module} ({layer(module)}) imports {target} ({layer(target)})"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        # A package's __init__ may re-export its own submodules.
        if LAYERS.index(layer(target)) > LAYERS.index(layer(module)) and not target.startswith(module + ".")
    ]
    assert upward == []


def test_no_import_cycles() -> None:
    graph = import_graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    # A package __init__ re-exporting its own submodules is not a cycle between modules.
    real = [c for c in cycles if not any(a.startswith(b + ".") or b.startswith(a + ".") for a, b in zip(c, c[1:]))]
    assert real == []


def test_nothing_imports_the_old_top_level_packages() -> None:
    """envs, policies and rewards are only reachable as rlprompt.envs, ... (no top-level package)."""
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for folder in (*FOLDERS, "tests", "experiments")
        for path in ROOT.joinpath(folder).rglob("*.py")
        for name in sorted(imported_modules(path))
        if name.split(".")[0] in ("envs", "policies", "rewards")
    ]
    assert offenders == []
