"""dvc.yaml follows the code: each stage depends on every module its command runs — stages/cli.py as DVC runs it
(its module-level imports) and the stage's module with all it imports — and on nothing else of csra/ or stages/,
so editing the heatmaps or the export leaves train and evaluate up to date; and its params are exactly the keys its
schema reads, less where runs are recorded."""

import ast
from pathlib import Path

import pytest
import yaml
from helpers import REPO, repo_params

from csra.data.datasets import DATASETS

STAGES = ("prepare", "train", "evaluate", "demo", "export")


def module_file(name: str) -> Path | None:
    path = REPO.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported(path: Path, top_level: bool = False) -> set[str]:
    """Every csra or stages module a file imports, at module level or (unless top_level) inside functions."""
    names = set()
    tree = ast.parse(path.read_text())
    for node in tree.body if top_level else ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {n for n in names if n.split(".")[0] in ("csra", "stages")}


def closure(start: Path, top_level: bool = False) -> set[str]:
    """The files a module reaches, package __init__ files included (importing a module runs them); with top_level,
    only through start's module-level imports."""
    seen, todo = set(), [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported(path, top_level and path == start):
            parts = name.split(".")
            todo += [f for i in range(1, len(parts) + 1) if (f := module_file(".".join(parts[:i])))]
    return {str(p.relative_to(REPO)) for p in seen}


def declared_deps(stage: str) -> list[str]:
    """The stage's deps under csra/ and stages/, as dvc.yaml lists them (files and folders)."""
    deps = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]["deps"]
    return [dep for dep in deps if dep.startswith(("csra", "stages"))]


def code_deps(stage: str) -> set[str]:
    """The stage's deps under csra/ and stages/, folders expanded to their Python files."""
    files = set()
    for dep in declared_deps(stage):
        path = REPO / dep
        files |= {str(p.relative_to(REPO)) for p in path.rglob("*.py")} if path.is_dir() else {dep}
    return files


def converters() -> set[str]:
    """Modules prepare imports by name through the registry."""
    modules = {e.converter.split(":")[0] for e in DATASETS.values() if e.converter}
    return set().union(*(closure(module_file(m)) for m in modules))


def by_path(stage: str) -> set[str]:
    """Code a stage runs without importing it: prepare's converters (named in the dataset registry) and the served
    model, which export loads as MLflow serves it to check its scores."""
    if stage == "prepare":
        return converters()
    return closure(REPO / "stages" / "tracking" / "served_model.py") if stage == "export" else set()


@pytest.mark.parametrize("stage", STAGES)
def test_code_deps_cover_the_import_closure(stage):
    """Every module the stage runs is a dep (a file, or in a folder of csra/); every dep is one it runs (a folder
    holds at least one)."""
    command = closure(REPO / "stages" / "cli.py", top_level=True)  # each command then imports its stage's module
    reached = command | closure(REPO / "stages" / f"{stage}.py") | by_path(stage)
    assert sorted(reached - code_deps(stage)) == [], "imported but not a dep"
    for dep in declared_deps(stage):
        assert dep in reached or any(r.startswith(f"{dep}/") for r in reached), f"{dep}: the stage does not import it"


def test_heatmap_and_export_code_is_not_a_dep_of_train_or_evaluate():
    for stage in ("train", "evaluate"):
        assert not {d for d in code_deps(stage) if d.startswith("csra/deploy")}
    assert "csra/deploy/heatmaps.py" in code_deps("demo") and "csra/deploy/export.py" in code_deps("export")


def test_cli_imports_no_stage_module_until_a_command_runs():
    assert not {m for m in closure(REPO / "stages" / "cli.py", top_level=True)
                if m.removeprefix("stages/").removesuffix(".py") in STAGES}


@pytest.mark.parametrize("stage", STAGES)
def test_params_are_exactly_the_keys_the_stage_reads(stage):
    """A stage reads params.yaml only through its schema (stages/<stage>.py: Params); dvc.yaml declares what the
    schema reads, less the groups that change no output (tracking)."""
    import importlib

    module = importlib.import_module(f"stages.{stage}")
    declared = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]["params"]
    assert declared == module.Params.declared()
    assert "tracking" not in declared


def test_every_key_of_the_params_file_is_read_by_a_stage(tmp_path):
    import importlib

    from stages.params import load_params

    def keys(node, prefix=""):
        for k, v in node.items():
            yield from keys(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(repo_params()))
    read = set()
    for stage in STAGES:
        read |= set(load_params(importlib.import_module(f"stages.{stage}").Params, path).flat())
    assert sorted(read) == sorted(keys(repo_params()))


def test_train_records_in_its_checkpoint_exactly_the_params_it_depends_on(trained_workspace):
    """A checkpoint holds no param that DVC does not track for train (where runs are recorded, evaluate's settings):
    else a retrain after an unrelated change would write other bytes under the same lock."""
    import torch

    payload = torch.load(trained_workspace.root / "results" / "train" / "best.pt", weights_only=True)
    declared = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["train"]["params"]
    recipe, recorded = set(payload["recipe"]), set(payload["params"])
    assert not {f"train.{k}" for k in recipe} & recorded  # each once
    wanted = {k for k in declared if "." in k} | {f"train.{k}" for k in repo_params()["train"]}
    assert recorded | {f"train.{k}" for k in recipe} == wanted
