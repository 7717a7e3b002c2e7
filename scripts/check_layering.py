"""Checks the import rules of backend/circuitboard by reading the source (AST), without importing anything.

The layers, lowest first (docs/architecture.md, "Layering"):

    ranges, precision -> config -> engine -> data -> training | atlas -> store -> jobs -> api -> cli

A module may import modules of its own package and of lower layers only. `training` and `atlas` share a layer
and never import each other. `presets` and `devtools` sit just above what they import and are never imported by
the engine. Every import counts: module level, inside functions, and under `if TYPE_CHECKING:`. There must be
no import cycle between modules, nor between packages.

Usage: python scripts/check_layering.py [PACKAGE_DIR]   (exit status 1 and one line per violation)
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT_PACKAGE = "circuitboard"

# The rank of each top-level unit of circuitboard; equal ranks of different units may not import each other.
LAYERS: dict[str, float] = {
    "ranges": 0,
    "config": 0.5,
    "precision": 0,
    "engine": 1,
    "data": 2,
    "training": 3,
    "atlas": 3,
    "store": 4,
    "jobs": 5,
    "api": 6,
    "cli": 7,
    "__main__": 8,
}
# Placed by their imports: just above the highest unit they import (so they can be used from there up).
FLOATING = ("presets", "devtools")
# The package's own __init__ (version string only) may be imported from anywhere.
ANYWHERE = {ROOT_PACKAGE}


def module_files(pkg_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under the package (migrations excluded: Alembic scripts)."""
    out: dict[str, Path] = {}
    for f in sorted(pkg_dir.rglob("*.py")):
        rel = f.relative_to(pkg_dir.parent).with_suffix("")
        parts = list(rel.parts)
        if "migrations" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _is_package(name: str, files: dict[str, Path]) -> bool:
    return name in files and files[name].name == "__init__.py"


def imports_of(name: str, path: Path, files: dict[str, Path]) -> set[str]:
    """The circuitboard modules that `name` imports (resolving `from pkg import submodule`)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = name if _is_package(name, files) else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
            found.update(t for t in targets if t.split(".")[0] == ROOT_PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != ROOT_PACKAGE:
                continue
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in files]
            found.update(subs or [base])
            if subs and len(subs) < len(node.names):
                found.add(base)
    return {_owner(m, files) for m in found if _owner(m, files) != name}


def _owner(module: str, files: dict[str, Path]) -> str:
    """The longest prefix of `module` that is a file we know (an attribute import names its module)."""
    parts = module.split(".")
    while parts and ".".join(parts) not in files:
        parts.pop()
    return ".".join(parts) or module


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def ranks(graph: dict[str, set[str]]) -> dict[str, float]:
    """Rank of every unit; floating units take (max rank of what they import) + 0.5."""
    out = dict(LAYERS)
    for u in FLOATING:
        deps = {unit(d) for m, ds in graph.items() if unit(m) == u for d in ds} - {u} - set(FLOATING)
        out[u] = max((LAYERS.get(d, 0) for d in deps), default=0) + 0.5
    return out


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    rank = ranks(graph)
    bad = []
    for mod, deps in sorted(graph.items()):
        src = unit(mod)
        for dep in sorted(deps):
            dst = unit(dep)
            if dep in ANYWHERE or dst == src:
                continue
            if dst not in rank or src not in rank:
                bad.append(f"{mod} -> {dep}: unit '{dst if dst not in rank else src}' has no layer (add it to LAYERS)")
            elif src == "engine" and dst not in ("engine", "ranges", "precision"):
                # not the server's settings either: `circuitboard trace` imports the engine and nothing above it
                bad.append(f"{mod} -> {dep}: the engine imports only the engine, ranges and precision")
            elif rank[dst] >= rank[src]:
                bad.append(f"{mod} -> {dep}: '{src}' (layer {rank[src]}) may not import '{dst}' (layer {rank[dst]})")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterable[str]]] = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            nxt = next(iter(it), None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for mod, deps in graph.items():
        out.setdefault(unit(mod), set()).update(unit(d) for d in deps if unit(d) != unit(mod) and d not in ANYWHERE)
    return out


def check(pkg_dir: Path) -> list[str]:
    files = module_files(pkg_dir)
    graph = {name: imports_of(name, path, files) for name, path in files.items()}
    problems = layer_violations(graph)
    problems += [f"module import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    problems += [f"package import cycle: {' -> '.join(c)}" for c in cycles(package_graph(graph))]
    return problems


def main(argv: list[str]) -> int:
    pkg_dir = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / "backend" / ROOT_PACKAGE
    problems = check(pkg_dir)
    for p in problems:
        print(p)
    print(f"layering: {len(problems)} problem(s) in {pkg_dir}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
