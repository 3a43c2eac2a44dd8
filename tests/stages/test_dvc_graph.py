"""dvc.yaml's code deps follow the import graph: each stage depends on every module its command imports (at any
level), and on nothing else of csra/ or stages/ — so editing the heatmaps or the export leaves train and evaluate
up to date."""

import ast
from pathlib import Path

import pytest
import yaml
from helpers import REPO

from csra.data.datasets import DATASETS

STAGES = ("prepare", "train", "evaluate", "demo", "export")


def module_file(name: str) -> Path | None:
    path = REPO.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported(path: Path) -> set[str]:
    """Every csra/stages module a file imports, at module level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {n for n in names if n.split(".")[0] in ("csra", "stages")}


def closure(start: Path) -> set[str]:
    """The files a stage's module reaches, package __init__ files included (importing a module runs them)."""
    seen, todo = set(), [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported(path):
            parts = name.split(".")
            todo += [f for i in range(1, len(parts) + 1) if (f := module_file(".".join(parts[:i])))]
    return {str(p.relative_to(REPO)) for p in seen}


def code_deps(stage: str) -> set[str]:
    """The stage's deps under csra/ and stages/, folders expanded to their Python files."""
    deps = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]["deps"]
    files = set()
    for dep in deps:
        path = REPO / dep
        if dep.startswith(("csra", "stages")):
            files |= {str(p.relative_to(REPO)) for p in path.rglob("*.py")} if path.is_dir() else {dep}
    return files


def converters() -> set[str]:
    """Modules prepare imports by name through the registry."""
    modules = {e.converter.split(":")[0] for e in DATASETS.values() if e.converter}
    return set().union(*(closure(module_file(m)) for m in modules))


@pytest.mark.parametrize("stage", STAGES)
def test_code_deps_are_exactly_the_import_closure(stage):
    reached = closure(REPO / "stages" / f"{stage}.py") | (converters() if stage == "prepare" else set())
    declared = code_deps(stage)
    assert sorted(reached - declared) == [], "imported but not a dep"
    assert sorted(declared - reached) == [], "a dep the stage does not import"


def test_heatmap_and_export_code_is_not_a_dep_of_train_or_evaluate():
    for stage in ("train", "evaluate"):
        assert not {d for d in code_deps(stage) if d.startswith("csra/deploy")}
    assert "csra/deploy/heatmaps.py" in code_deps("demo") and "csra/deploy/export.py" in code_deps("export")


def test_train_records_in_its_checkpoint_exactly_the_params_it_depends_on():
    """A checkpoint holds no param that DVC does not track for train (where runs are recorded, evaluate's settings):
    else a retrain after an unrelated change would write other bytes under the same lock."""
    from stages.train import OUTPUT_PARAMS

    declared = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["train"]["params"]
    assert list(OUTPUT_PARAMS) == declared
