"""The layers of the house, checked over the import graph (every import, also those inside functions).

- runtime/ imports nothing of node/, p2p/ or consensus/ (it is the deterministic core);
- consensus/ imports only runtime/;
- p2p/ imports neither node/ nor consensus/;
- import circles: none outside node/, and inside node/ only the known ones listed in KNOWN_CYCLES.
  A circle that grows, or a new one, fails; one that shrinks or disappears passes (shorten the list
  when you break one).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("runtime", "consensus", "p2p", "node")

# package -> the other top-level packages it may import
ALLOWED = {
    "runtime": set(),
    "consensus": {"runtime"},
    "p2p": {"runtime"},
    "node": {"runtime", "consensus", "p2p"},
}

# Import circles inside node/ at the time this check was written (issue 14 removes them).
KNOWN_CYCLES = [
]


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """module -> the project modules it imports anywhere in its file (top level, functions, TYPE_CHECKING)."""
    paths = {module_name(root, p): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                # `from package import submodule` imports the submodule; `from module import name` the module
                for alias in node.names:
                    found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in paths else target)
        graph[name] = {m for m in found if m in paths and m != name}
    return graph


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, deps in sorted(graph.items()):
        own = module.split(".")[0]
        for dep in sorted(deps):
            other = dep.split(".")[0]
            if other != own and other not in ALLOWED.get(own, set()):
                bad.append(f"{module} imports {dep}")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The import circles: strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.add(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def new_cycles(graph: dict[str, set[str]], known: list[set[str]]) -> list[set[str]]:
    """Circles not contained in one of the known ones."""
    return [c for c in cycles(graph) if not any(c <= k for k in known)]


# ---------------------------------------------------------------- the project


def test_layers_import_only_downwards():
    assert layer_violations(import_graph(ROOT)) == []


def test_no_new_import_circles():
    found = new_cycles(import_graph(ROOT), KNOWN_CYCLES)
    assert found == [], f"new or grown import circles: {[sorted(c) for c in found]}"


# ---------------------------------------------------------------- the checker itself


def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, set[str]]:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return import_graph(tmp_path)


def test_checker_sees_lazy_and_relative_imports_across_layers(tmp_path):
    graph = _tree(tmp_path, {
        "runtime/__init__.py": "",
        "runtime/a.py": "def f():\n    from node import b\n",
        "consensus/__init__.py": "",
        "consensus/c.py": "from ..p2p import d\nfrom . import e\n",
        "consensus/e.py": "import runtime.a\n",
        "p2p/__init__.py": "",
        "p2p/d.py": "",
        "node/__init__.py": "",
        "node/b.py": "import consensus.c\n",
    })
    assert layer_violations(graph) == ["consensus.c imports p2p.d", "runtime.a imports node.b"]


def test_checker_finds_new_and_grown_circles(tmp_path):
    graph = _tree(tmp_path, {
        "node/__init__.py": "",
        "node/a.py": "from node import b\n",
        "node/b.py": "def f():\n    import node.a\n",
        "node/c.py": "import node.d\n",
        "node/d.py": "import node.e\n",
        "node/e.py": "import node.c\n",
        "node/p/__init__.py": "from node.p.k import X\n",  # a package and its submodules are no circle
        "node/p/k.py": "from node.p import h\nX = h\n",
        "node/p/h.py": "",
    })
    assert sorted(map(sorted, cycles(graph))) == [["node.a", "node.b"], ["node.c", "node.d", "node.e"]]
    assert new_cycles(graph, [{"node.a", "node.b"}]) == [{"node.c", "node.d", "node.e"}]
    assert new_cycles(graph, [{"node.a", "node.b"}, {"node.c", "node.d"}]) == [{"node.c", "node.d", "node.e"}]
    assert new_cycles(graph, [{"node.a", "node.b", "node.x"}, {"node.c", "node.d", "node.e"}]) == []
