"""The layering the design promises (README, "Architecture"), checked on the source's imports.

Every ``import`` counts, at module level or inside a function (a lazy import still runs when its
function does), except those under ``if TYPE_CHECKING:``. Rules are transitive where the design
says "everything below it".
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("search", "serving", "dashboard")
#: The dashboard's data layer: pure functions over the results format and the endpoint's JSON.
DASHBOARD_DATA = ("dashboard.loaders", "dashboard.space", "dashboard.importance",
                  "dashboard.synthetic", "dashboard.charts", "dashboard.client")
#: Where Ray may be imported: the sweep adapter (with the Tune logger callbacks it hands Tune)
#: and the serving layer that deploys on Ray Serve.
RAY_ALLOWED = ("search.sweep", "search.tracking", "serving.")
TORCH = ("torch", "transformers")  # transformers imports torch


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for n in ast.walk(node)}
    return skipped


def imported_names(source: str) -> set[str]:
    """Dotted names a module imports (``from a import b`` gives ``a`` and ``a.b``)."""
    tree = ast.parse(source)
    skipped, names = _type_checking_nodes(tree), set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the names it imports, for every module of the three packages under ``root``."""
    return {_module_name(path, root): imported_names(path.read_text())
            for package in PACKAGES for path in sorted((root / package).rglob("*.py"))}


def _internal(graph: dict[str, set[str]], module: str) -> set[str]:
    # A bare package name (`from search import data` also yields `search`) is its __init__,
    # which holds nothing; the submodule is the edge that matters.
    return {name for name in graph[module] if name in graph and name != module
            and name not in PACKAGES}


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for name in _internal(graph, todo.pop()) - seen:
            seen.add(name)
            todo.append(name)
    return seen


def _third_party(graph: dict[str, set[str]], modules: set[str]) -> set[str]:
    return {name.split(".")[0] for m in modules for name in graph[m]}


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every broken rule, as a sentence naming the modules."""
    found = []
    below_config = reachable(graph, "search.config")
    if bad := _third_party(graph, below_config) & {"torch", "ray"}:
        found.append(f"search.config imports {sorted(bad)}")
    below_train = reachable(graph, "search.train")
    for module in sorted(below_train):
        if "ray" in _third_party(graph, {module}):
            found.append(f"{module} is below search.train and imports ray")
    for module in sorted(m for m in graph if m.startswith(("serving", "dashboard"))):
        if bad := reachable(graph, module) & {"search.train", "search.sweep"}:
            found.append(f"{module} reaches {sorted(bad)}")
    for module in DASHBOARD_DATA:
        if module in graph and (bad := _third_party(graph, reachable(graph, module)) & {*TORCH}):
            found.append(f"{module} (dashboard data layer) reaches {sorted(bad)}")
    for module in sorted(graph):
        if "ray" in _third_party(graph, {module}) and not module.startswith(RAY_ALLOWED):
            found.append(f"{module} imports ray outside the sweep adapter and serving")
    found += [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph)]
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per module that can reach itself through modules of its own package."""
    found, reported = [], set()
    for start in sorted(graph):
        package = start.split(".")[0]
        path = _path_back(graph, start, package)
        if path and not reported & set(path):
            reported |= set(path)
            found.append(path)
    return found


def _path_back(graph: dict[str, set[str]], start: str, package: str) -> list[str] | None:
    todo, parents = [start], {start: None}
    while todo:
        module = todo.pop(0)
        for name in sorted(_internal(graph, module)):
            if not name.startswith(package + "."):
                continue
            if name == start:
                path = [module]
                while parents[path[-1]] is not None:
                    path.append(parents[path[-1]])
                return [*reversed(path), start]
            if name not in parents:
                parents[name] = module
                todo.append(name)
    return None


def test_the_source_keeps_its_layers():
    assert violations(import_graph(ROOT)) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    for name, source in files.items():
        (tmp_path / name).write_text(source)
    return tmp_path


CLEAN = {
    "search/config.py": "import yaml\n",
    "search/train.py": "import torch\nfrom search import config\n",
    "search/sweep.py": "import ray\nfrom search.train import x\n",
    "serving/app.py": "import ray\nfrom search import config\n",
    "dashboard/loaders.py": "import pandas\n",
}


@pytest.mark.parametrize(("edit", "message"), [
    ({"search/config.py": "import torch\n"}, "search.config imports ['torch']"),
    ({"search/config.py": "def f():\n    from search import train\n"},
     "search.config imports ['torch']"),
    ({"search/data.py": "import ray\n", "search/train.py": "from search import data\n"},
     "search.data is below search.train and imports ray"),
    ({"dashboard/loaders.py": "from search.sweep import run_sweep\n"},
     "dashboard.loaders reaches ['search.sweep', 'search.train']"),
    ({"dashboard/loaders.py": "import transformers\n"},
     "dashboard.loaders (dashboard data layer) reaches ['transformers']"),
    ({"search/results.py": "import ray\n"},
     "search.results imports ray outside the sweep adapter and serving"),
    ({"search/results.py": "def f():\n    import search.recorder\n",
      "search/recorder.py": "from search.results import x\n"},
     "import cycle: search.recorder -> search.results -> search.recorder"),
])
def test_the_check_catches_each_broken_rule(tmp_path, edit, message):
    root = _tree(tmp_path, {**CLEAN, **edit})
    assert message in violations(import_graph(root))


def test_the_check_passes_a_clean_tree_and_ignores_type_checking_imports(tmp_path):
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n"
    root = _tree(tmp_path, {**CLEAN, "search/config.py": source})
    assert violations(import_graph(root)) == []
