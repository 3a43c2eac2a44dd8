"""The code's own words name only what exists: every repository path (`csra/…`, `stages/…`, `tests/…`, …) that a
docstring or comment of a .py file names is there (as tests/test_docs.py checks the .md pages; another project's
files, such as the official code's, are not ours to check), and every dotted
name that starts with a module of ours (`csra.data.loading.loader_workers`, `stages.search.space`) imports and
resolves (other dotted names, such as the MLflow tag csra.train_run_id, are not module names)."""

from __future__ import annotations

import ast
import importlib
import io
import re
import tokenize
from pathlib import Path

import pytest
from helpers import REPO
from test_docs import path_problem, repository

SOURCES = sorted(p for top in ("csra", "stages", "tests", "bench") for p in (REPO / top).rglob("*.py"))
DOTTED = re.compile(r"(?<![\w./-])((?:csra|stages)(?:\.\w+)+)")
PACKAGES = ("csra", "stages")


def words(source: str) -> list[tuple[int, str]]:
    """(line, text) of every docstring and comment of a module's source."""
    found = [(tok.start[0], tok.string) for tok in tokenize.generate_tokens(io.StringIO(source).readline)
             if tok.type == tokenize.COMMENT]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                found.append((node.body[0].lineno, doc))
    return found


def clean(token: str) -> str:
    """A word of prose without the punctuation around it: `(stages/search/records.py).` → stages/search/records.py."""
    while token != (token := token.removesuffix("'s").strip("'\"()[],;.:")):
        pass
    return token


def ours(name: str) -> bool:
    """Whether a dotted name starts with a module of ours (csra.data…, not an MLflow tag such as csra.train_run_id)."""
    parts = name.split(".")
    return (REPO / parts[0] / parts[1]).is_dir() or (REPO / parts[0] / f"{parts[1]}.py").is_file()


def unresolved(name: str) -> bool:
    """Whether csra.x.y… names no module or attribute: the longest importable prefix, then attributes."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(found, attribute):
                return True
            found = getattr(found, attribute)
        return False
    return True


def problems(path: Path, source: str) -> list[str]:
    name = path.relative_to(REPO).as_posix()
    found = []
    for line, text in words(source):
        for token in map(clean, text.replace("`", " ").split()):
            if token.split("/")[0] in repository().roots and (why := path_problem(token, repository())):
                found.append(f"{name}:{line}: {token}: {why}")
        for match in DOTTED.finditer(text):
            dotted = match.group(1).rstrip(".")
            if ours(dotted) and unresolved(dotted):
                found.append(f"{name}:{line}: {dotted}: no such module or name")
    return sorted(set(found))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_module_and_path_a_docstring_or_comment_names_exists(path):
    assert problems(path, path.read_text(encoding="utf-8")) == []


STALE = '''"""Trials run in stages/search_trials.py, with csra.train.loops.train_one_epoch."""


def f():
    """See csra.data.loading.no_such_function and csra/model/zoo.py."""
    return 1  # the space is checked by stages.search.space.load_space; gone: stages.search.space.load_spaces
'''


def test_a_stale_name_in_the_code_is_reported():
    found = problems(REPO / "stages" / "x.py", STALE)
    for word in ("stages/search_trials.py", "csra.train.loops.train_one_epoch", "csra.data.loading.no_such_function",
                 "stages.search.space.load_spaces"):
        assert [line for line in found if f" {word}:" in line], (word, found)
    assert not [line for line in found if "zoo.py" in line or " stages.search.space.load_space:" in line]
