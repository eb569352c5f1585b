"""The package layout the README promises: `ls stages/` shows the pipeline, and the stage boundary is real.

Each rule runs `python -m stages.<rule>` (pretrain and sft share `train_lm`); no stage module imports
another, so a stage's code inputs (stages.common.sources) hold its own code and the helpers it uses;
no module is over 400 lines, and the imports between `stages` modules form no cycle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "workflow" / "rules"
SHARED_MODULES = {"pretrain": "train_lm", "sft": "train_lm"}


def rule_modules() -> dict[str, str]:
    """rule name -> the module its shell command runs."""
    found = {}
    for smk in sorted(RULES.glob("*.smk")):
        for block in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0].strip()
            module = re.search(r"python -m stages\.([\w.]+)", block)
            if module:
                found[name] = module.group(1)
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stages_imports(path: Path) -> set[str]:
    """The `stages.*` modules a file imports (at any depth: a lazy import is still a dependency)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("stages")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stages"):
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in (REPO / "stages").rglob("*.py")}


def test_every_rule_runs_the_module_of_its_own_name():
    rules = rule_modules()
    assert rules, "no rule with a `python -m stages.*` command found"
    wrong = {rule: module for rule, module in rules.items() if module != SHARED_MODULES.get(rule, rule)}
    assert not wrong, f"rules whose module is not named after them: {wrong}"
    modules = all_modules()
    missing = {module for module in rules.values() if f"stages.{module}" not in modules}
    assert not missing, f"rules run modules that do not exist: {missing}"


def test_no_stage_module_imports_another():
    stage_modules = {f"stages.{module}" for module in rule_modules().values()}
    modules = all_modules()
    leaks = {}
    for stage in sorted(stage_modules):
        others = (stages_imports(modules[stage]) & stage_modules) - {stage}
        if others:
            leaks[stage] = sorted(others)
    assert not leaks, f"stage modules that import other stages (share through stages/common instead): {leaks}"


def test_no_module_is_over_400_lines():
    long = {name: n for name, path in all_modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > 400}
    assert not long, f"modules over 400 lines: {long}"


def test_the_imports_between_modules_form_no_cycle():
    modules = all_modules()
    graph = {name: {dep for dep in stages_imports(path) if dep in modules and dep != name}
             for name, path in modules.items()}
    # a package's __init__ importing its own submodules is how a package re-exports; not a cycle of modules
    graph = {name: {dep for dep in deps if not dep.startswith(f"{name}.")} for name, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep] if dep in path else [name, dep]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if dep not in state:
                visit(dep, path + [dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_codec_eval_depends_on_no_lm_code():
    """Editing the LM must not rerun the codec's scoring, which never runs the LM."""
    from stages.common.sources import module_sources

    sources = [path.relative_to(REPO).as_posix() for path in module_sources("stages.codec_eval", REPO)]
    assert "stages/codec_eval.py" in sources
    lm = [s for s in sources if s.startswith(("stages/lm/", "stages/runtime/", "stages/train/"))]
    assert not lm, f"codec_eval's code inputs include LM code: {lm}"


def test_every_config_key_is_defined_in_the_module_of_its_section():
    """`a.b` lives in stages/config/a.py (sft's keys are pretrain's, by subclassing)."""
    import dataclasses
    import typing

    from stages.config import PipelineConfig

    def owners(cls) -> set[str]:
        hints = typing.get_type_hints(cls)
        found = {cls.__module__}
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                found |= owners(hints[f.name])
        return found

    hints = typing.get_type_hints(PipelineConfig)
    wrong = {}
    for f in dataclasses.fields(PipelineConfig):
        section = hints[f.name]
        if not dataclasses.is_dataclass(section):
            continue  # a top-level scalar (run, shards): defined with the tree in stages/config/pipeline.py
        allowed = {f"stages.config.{f.name}", *(("stages.config.pretrain",) if f.name == "sft" else ())}
        outside = owners(section) - allowed
        if outside:
            wrong[f.name] = sorted(outside)
    assert not wrong, f"config sections with keys defined outside stages/config/<section>.py: {wrong}"


def test_the_config_package_imports_no_torch_or_text_library():
    import subprocess
    import sys

    code = ("import sys, stages.config; from stages.config import load_config; load_config('configs/demo.yaml'); "
            "print(sorted(m for m in ('torch', 'sentencepiece', 'cn2an', 'num2words') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
