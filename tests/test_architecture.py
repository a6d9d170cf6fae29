"""The package's shape, read from its source with ``ast`` (nothing of krqa is imported, so nothing heavy loads).

An import inside a function is an arrow like any other: it runs the moment that function runs, and a circle it
closes is still a circle, only one that shows up later and somewhere else. Imports under ``if TYPE_CHECKING:``
count too: a circle in the types is a circle in the design. An arrow goes to the module named, not to the
packages above it (a package ``__init__`` re-exporting its children does not make a circle of the design).
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "krqa"
HEAVY = {"torch", "transformers", "peft", "trl", "vllm"}


class Module:
    """One parsed source file of the package."""

    def __init__(self, path: Path, root: Path) -> None:
        parts = path.relative_to(root.parent).with_suffix("").parts
        self.path = path
        self.is_package = parts[-1] == "__init__"
        self.name = ".".join(parts[:-1] if self.is_package else parts)
        self.tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))

    def imports(self, top_level_only: bool = False) -> Iterator[tuple[str, str | None, int]]:
        """(module, name imported from it or None, line) for every import statement; with ``top_level_only``,
        only those that run when the module loads (not in functions or ``if TYPE_CHECKING:``)."""
        for node in (self._load_time(self.tree.body) if top_level_only else ast.walk(self.tree)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield alias.name, None, node.lineno
            elif isinstance(node, ast.ImportFrom):
                source = node.module or ""
                if node.level:
                    package = self.name.split(".") if self.is_package else self.name.split(".")[:-1]
                    source = ".".join(package[: len(package) - node.level + 1] + ([source] if source else []))
                for alias in node.names:
                    yield source, alias.name, node.lineno

    def _load_time(self, body: list[ast.stmt]) -> Iterator[ast.stmt]:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                yield node
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                yield from self._load_time(node.body + node.orelse)
            elif isinstance(node, ast.Try):
                yield from self._load_time(node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body])


@functools.cache
def parse_package(root: Path = PACKAGE) -> dict[str, Module]:
    return {m.name: m for m in (Module(p, root) for p in sorted(root.rglob("*.py")))}


def import_graph(modules: dict[str, Module], top_level_only: bool = False) -> dict[str, dict[str, int]]:
    """module -> {package module it imports: line of the first such import}; ``from a import b`` points at
    ``a.b`` when that is a module, else at ``a``; ``import a.b.c`` at the longest of those that is a module."""
    graph: dict[str, dict[str, int]] = {}
    for name, module in modules.items():
        arrows: dict[str, int] = {}
        for source, imported, line in module.imports(top_level_only):
            target = f"{source}.{imported}" if f"{source}.{imported}" in modules else source
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                arrows.setdefault(target, line)
        graph[name] = arrows
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One circle of arrows as [a, b, ..., a], or None (depth-first search that colours the nodes it is in)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def describe(cycle: list[str], graph: dict[str, dict[str, int]], modules: dict[str, Module]) -> str:
    return "\n".join(f"  {a} -> {b}  ({modules[a].path.relative_to(PACKAGE.parent)}:{graph[a][b]})" for a, b in zip(cycle, cycle[1:]))


def test_no_import_circle_in_krqa() -> None:
    modules = parse_package()
    graph = import_graph(modules)
    cycle = find_cycle(graph)
    assert cycle is None, "import circle (imports inside functions count):\n" + describe(cycle, graph, modules)


def test_checker_sees_a_circle_closed_inside_a_function(tmp_path: Path) -> None:
    """The checker itself: a circle whose last arrow is a relative import inside a function."""
    pkg = tmp_path / "krqa"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "sub" / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "sub" / "a.py").write_text("from krqa.sub.b import thing\n", encoding="utf-8")
    (pkg / "sub" / "b.py").write_text("import os\nfrom krqa import other\nthing = 1\n", encoding="utf-8")
    (pkg / "other.py").write_text("def f():\n    from .sub import a\n    return a\n", encoding="utf-8")
    graph = import_graph(parse_package(pkg))
    assert graph == {"krqa": {}, "krqa.sub": {}, "krqa.sub.a": {"krqa.sub.b": 1}, "krqa.sub.b": {"krqa.other": 2},
                     "krqa.other": {"krqa.sub.a": 2}}
    assert find_cycle(graph) == ["krqa.other", "krqa.sub.a", "krqa.sub.b", "krqa.other"]
    del graph["krqa.other"]["krqa.sub.a"]
    assert find_cycle(graph) is None


def calls_to(function: str) -> dict[str, list[int]]:
    """krqa module -> lines where a function of that name is called (plain or as an attribute)."""
    found: dict[str, list[int]] = {}
    for name, module in parse_package().items():
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
                if called == function:
                    found.setdefault(name, []).append(node.lineno)
    return found


def test_only_the_composition_root_builds_generators() -> None:
    assert set(calls_to("make_generator")) == {"krqa.wiring"}


def test_one_function_named_run_stage() -> None:
    defs = [(name, node.lineno) for name, module in parse_package().items() for node in ast.walk(module.tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "run_stage"]
    assert len(defs) == 1, f"run_stage defined {len(defs)} times: {defs}"


@pytest.mark.parametrize("start", ["krqa.generation.base", "krqa.generation.factory", "krqa.generation.answerer", "krqa.wiring"])
def test_generation_interface_loads_no_engine(start: str) -> None:
    """What the service's routes, the answerer and the composition root load to speak to a generator imports no
    engine library: torch, transformers and vLLM load only when a backend is built (the reason the factory imports
    the backends inside ``make_generator``)."""
    modules = parse_package()
    graph = import_graph(modules, top_level_only=True)
    seen, todo = set(), [start]
    while todo:
        if (name := todo.pop()) not in seen:
            seen.add(name)
            todo += graph[name]
    loaded = {(source.split(".")[0], name) for name in seen for source, _, _ in modules[name].imports(top_level_only=True)}
    assert not {pair for pair in loaded if pair[0] in HEAVY}


def test_imports_inside_functions_say_why() -> None:
    """An import inside a function needs a reason a reader can check: a comment on its line (or the line above)
    naming start-up time or an optional dependency. Without one it may be hiding a circle."""
    unexplained = []
    for module in parse_package().values():
        lines = module.path.read_text(encoding="utf-8").splitlines()
        for func in ast.walk(module.tree):
            if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(func):
                    if isinstance(node, (ast.Import, ast.ImportFrom)):
                        above = lines[node.lineno - 2].strip()
                        comment = lines[node.end_lineno - 1].partition("#")[2] + (above if above.startswith("#") else "")
                        if not any(why in comment for why in ("start-up time", "optional dependency")):
                            unexplained.append(f"{module.path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not unexplained, "imports inside functions without a reason: " + ", ".join(sorted(set(unexplained)))
