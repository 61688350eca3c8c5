"""What a source file imports, read from its syntax tree (nothing is executed)."""

from __future__ import annotations

import ast
from pathlib import Path


def imported_modules(path: Path, members: bool = False) -> set[str]:
    """Absolute module names ``path`` imports, at any depth of the file (lazy imports included).

    Args:
        path: A Python source file.
        members: Also ``module.name`` for each ``from module import name`` (a name may be a submodule).
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            if members:
                found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found
