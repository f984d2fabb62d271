"""The packages of birdsweep import downwards only, and no modules import each other in a circle.

The order, from the bottom up (a package may import those below it, never those above)::

    data → features → augment → model → scoring → train → track → evaluate → sweep
         → export → infer → cli

- ``scoring`` (windows read and scored, test-time shifts, recording context, combining models,
  the submission table, the metric, the ensemble manifest and ONNX names) sits just below
  ``train``: training scores its soundscapes with it, as ``export`` and ``infer`` do. It imports
  only ``data`` (audio decoding, and the window layout and ``row_id`` format of
  ``data/windows.py``, which the data set's ground truth needs too).
- ``track`` (MLflow) sits below ``evaluate``: the report reads a run's artifacts through it.
  ``train`` reaches its tracker through the config (``logger``), not by an import.
- ``sweep`` runs training jobs as Optuna trials; ``cli`` holds the entry points (the
  ``birdsweep`` command and the task of ``python run.py``).

``birdsweep/__init__.py``, ``config.py`` and ``atomic.py`` are base utilities that any package
may import; they import no package. Every ``import`` counts: relative ones, and those inside
functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "birdsweep"
ORDER = [
    "data",
    "features",
    "augment",
    "model",
    "scoring",
    "train",
    "track",
    "evaluate",
    "sweep",
    "export",
    "infer",
    "cli",
]
BASE = {"birdsweep", "config", "atomic"}  # the package's __init__ and two utility modules


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of birdsweep."""
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """``(imported birdsweep module, line)`` of every import in a module, at any depth."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, int]] = []

    def add(target: str, line: int) -> None:
        while target and target not in known:  # `from birdsweep.x import name`: module x
            target = target.rpartition(".")[0]
        if target:
            found.append((target, line))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "birdsweep":
                    add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "birdsweep":
                continue
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{module}.{alias.name}"
                add(sub if sub in known else module, node.lineno)
    return sorted(set(found))


def _unit(module: str) -> str:
    """The package (or top-level module) a module belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _edges() -> list[tuple[str, str, str]]:
    """``(importing module, imported module, "file:line")`` over the whole package."""
    mods = _modules()
    known = set(mods)
    out = []
    for name, path in mods.items():
        for target, line in _imports(name, path, known):
            if target != name:
                out.append((name, target, f"{path.relative_to(PKG.parent)}:{line}"))
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_package_has_a_place_in_the_order():
    units = {_unit(m) for m in _modules()}
    assert units - BASE == set(ORDER), f"place these in ORDER: {sorted(units - BASE - set(ORDER))}"


def test_no_package_imports_upwards():
    bad = []
    for src, dst, where in _edges():
        a, b = _unit(src), _unit(dst)
        if a == b or b in BASE:
            continue
        if a in BASE or ORDER.index(b) > ORDER.index(a):
            bad.append(f"{where}: {a} -> {b} ({src} imports {dst})")
    assert not bad, "imports going up the order " + " -> ".join(ORDER) + ":\n" + "\n".join(bad)


def test_no_cycles_between_packages_or_modules():
    packages: dict[str, set[str]] = defaultdict(set)
    modules: dict[str, set[str]] = defaultdict(set)
    where: dict[tuple[str, str], list[str]] = defaultdict(list)
    for src, dst, at in _edges():
        modules[src].add(dst)
        if _unit(src) != _unit(dst):
            packages[_unit(src)].add(_unit(dst))
            where[_unit(src), _unit(dst)].append(at)
    cycles = _cycles(packages)
    lines = [
        f"{a} -> {b}: {', '.join(where[a, b])}"
        for cycle in cycles
        for a in cycle
        for b in sorted(packages[a] & set(cycle))
    ]
    assert not cycles, "packages importing each other:\n" + "\n".join(lines)
    circles = _cycles(modules)
    assert not circles, "modules importing each other: " + "; ".join(map(str, circles))


def test_the_checks_see_lazy_and_relative_imports(tmp_path):
    src = (
        "from . import sibling\n"
        "from ..data import audio\n"
        "def f():\n"
        "    from birdsweep.infer.ensemble import Ensemble\n"
        "    import birdsweep.export.graph\n"
    )
    path = tmp_path / "mod.py"
    path.write_text(src)
    known = {"birdsweep.train.sibling", "birdsweep.data.audio", "birdsweep.infer.ensemble"}
    known |= {"birdsweep.export.graph", "birdsweep.train.mod"}
    got = sorted(t for t, _ in _imports("birdsweep.train.mod", path, known))
    assert got == sorted(known - {"birdsweep.train.mod"})
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
