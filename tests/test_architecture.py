"""The module boundaries docs/en/scenes.md lists, checked on the source: no import cycle, no
private-name import, services free of ``flask.request``, the simulator behind one seam."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "storefront"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(module: str) -> list[tuple[str, str | None]]:
    """(imported module, imported name) for every import in ``module``, at any depth."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.append((candidate if candidate in MODULES else target, alias.name))
        elif isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
    return found


def _owner(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module in MODULES:
        parent = module.rpartition(".")[0]
        # A blueprint's views take ``bp`` from their package, which imports them after creating
        # it (Flask's pattern for a package of views): that one name is not a dependency.
        graph[module] = {owner for target, name in _imports(module)
                         if (owner := _owner(target)) and owner != module
                         and not (owner == parent and name == "bp")}
    return graph


def test_no_import_cycle():
    graph, state, stack, cycles = _graph(), {}, [], []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert cycles == []


def test_no_module_imports_another_module_s_private_name():
    private = [(module, target, name) for module in MODULES for target, name in _imports(module)
               if name and name.startswith("_") and not name.startswith("__") and name != "_"]
    assert private == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("storefront.services.")))
def test_services_do_not_read_the_flask_request(module):
    assert ("flask", "request") not in _imports(module)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("storefront.sandbox")))
def test_the_simulator_imports_nothing_from_the_shop_s_models_or_services(module):
    shop = [t for t, _n in _imports(module) if t == "storefront.models" or t.startswith("storefront.services")]
    assert shop == []


def test_the_shop_imports_the_simulator_only_in_the_app_factory():
    importers = {module for module in MODULES if not module.startswith("storefront.sandbox")
                 for target, _name in _imports(module) if (_owner(target) or "").startswith("storefront.sandbox")}
    assert importers == {"storefront"}


def test_protocol_package_knows_nothing_of_flask():
    flask_users = [m for m in MODULES if m.startswith("storefront.wechatpay")
                   for t, _n in _imports(m) if t.split(".")[0] == "flask"]
    assert flask_users == []
