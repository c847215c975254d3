"""flujo's packages import one way (docs/architecture.md): each only from the layers below it,
and never another package's private modules or names.

Every import counts, those inside functions and under ``TYPE_CHECKING`` too: an import that
goes up is a cycle waiting to happen, however late it runs.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Each package's layer: a package may import from its own layer and those below.
LAYERS: dict[str, int] = {
    "flujo.exceptions": 0,
    "flujo.serialization": 1,
    "flujo.utils": 2,
    "flujo.state": 2,
    "flujo.application": 3,
    "flujo.integrations": 4,
    "flujo.schema": 4,
    "flujo.demo": 4,
    "flujo.cli": 5,
    "flujo.testing": 5,
    "flujo.bench": 5,
    "flujo.tools": 5,  # the deprecated name of flujo.schema
}

#: Imports that go up, each with the reason it must.
UPWARD = {
    # The deprecated path of the contract suite hands its names over, with a warning.
    ("flujo.state.testing", "flujo.testing"),
}


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _imports() -> Iterator[tuple[str, str, list[str], int]]:
    """(importing module, imported module, names, line) for every flujo import in src."""
    for path in sorted((SRC / "flujo").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        module = ".".join(parts)
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("flujo"):
                        yield module, alias.name, [], node.lineno
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = parts if is_package else parts[:-1]
                    base = base[: len(base) - node.level + 1]
                    target = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    target = node.module or ""
                if not target.startswith("flujo"):
                    continue
                names = [alias.name for alias in node.names]
                if target == "flujo":  # ``from flujo import state``: the subpackages named
                    for name in names:
                        if (SRC / "flujo" / name).is_dir() or \
                                (SRC / "flujo" / f"{name}.py").is_file():
                            yield module, f"flujo.{name}", [], node.lineno
                    names = [n for n in names if not (SRC / "flujo" / n).is_dir()
                             and not (SRC / "flujo" / f"{n}.py").is_file()]
                yield module, target, names, node.lineno
            elif isinstance(node, ast.Call) and _imports_by_name(node):
                yield module, node.args[0].value, [], node.lineno  # type: ignore[attr-defined]


def _imports_by_name(call: ast.Call) -> bool:
    """``importlib.import_module("flujo....")`` or ``__import__("flujo....")``."""
    func = call.func
    named = (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id in ("import_module", "__import__"))
    return named and bool(call.args) and isinstance(call.args[0], ast.Constant) and \
        isinstance(call.args[0].value, str) and call.args[0].value.startswith("flujo")


def test_every_package_has_a_layer() -> None:
    packages = {_package(module) for module, _, _, _ in _imports()} - {"flujo"}
    assert packages <= set(LAYERS), sorted(packages - set(LAYERS))


def test_packages_import_only_from_their_layer_and_below() -> None:
    wrong = []
    for module, target, _, line in _imports():
        source, imported = _package(module), _package(target)
        if source == "flujo" or imported == "flujo" or (module, target) in UPWARD:
            continue  # the root package names everything, lazily; flujo.__version__ is fine
        if LAYERS[imported] > LAYERS[source] or (
                LAYERS[imported] == LAYERS[source] and imported != source):
            wrong.append(f"{module}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_no_import_of_another_package_s_private_parts(package: str) -> None:
    """What one package takes from another is that package's public interface."""
    wrong = []
    for module, target, names, line in _imports():
        if _package(target) != package or _package(module) == package:
            continue
        private = [part for part in target.split(".")[2:] if part.startswith("_")]
        private += [name for name in names
                    if name.startswith("_") and not (name.startswith("__") and name.endswith("__"))]
        if private:
            wrong.append(f"{module}:{line} imports {', '.join(private)} from {target}")
    assert not wrong, "\n".join(wrong)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` (its nodes in order, the first repeated last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found is not None:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found is not None:
                return found
    return None


def test_the_modules_of_serialization_import_one_way() -> None:
    """No cycle among flujo.serialization's modules, imports made only for type checking
    and inside functions included: each module can be read (and changed) knowing only
    the ones below it."""
    graph: dict[str, set[str]] = {}
    for module, target, names, _ in _imports():
        if not module.startswith("flujo.serialization.") or \
                not target.startswith("flujo.serialization"):
            continue
        targets = [target] if target != "flujo.serialization" else [
            f"flujo.serialization.{name}" for name in names]
        graph.setdefault(module, set()).update(
            t for t in targets if t != module and t.count(".") == 2)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_a_cycle_is_found_where_there_is_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
