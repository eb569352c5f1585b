"""Which source files a stage's result depends on, so Snakemake reruns a stage when its code changes.

    python -c "from pathlib import Path; from stages.common.sources import module_sources; print(module_sources('stages.resample', Path('.')))"

Snakemake tracks edits of a rule's inputs, not of an installed package, so each rule lists its stage's
module and the `stages.*` modules it imports (found by reading import statements, transitively) as
inputs. The config tree's root and machinery are left out on purpose: config *values* reach a job through
its params, and adding a key for one stage must not rerun all the others; a stage still depends on the
module of its own section (its checks and derived values, such as the codec's shape).
"""

from __future__ import annotations

import ast
from pathlib import Path

CONFIG_MODULES = {"stages", "stages.config", "stages.config.base", "stages.config.pipeline"}


def _module_file(module: str, repo: Path) -> Path | None:
    base = repo.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "stages" or name.startswith("stages.")}


def module_sources(module: str, repo: Path) -> list[Path]:
    """Source files of `module` and of every stages.* module it imports, sorted."""
    seen: dict[str, Path] = {}
    pending = [module]
    while pending:
        name = pending.pop()
        if name in seen or name in CONFIG_MODULES:
            continue
        path = _module_file(name, repo)
        if path is None:
            continue  # a name imported from a module (a function), not a module itself
        seen[name] = path
        pending.extend(_imports(path))
        parts = name.split(".")
        pending.extend(".".join(parts[:i]) for i in range(2, len(parts)))  # parent packages run on import
    return sorted(seen.values())
