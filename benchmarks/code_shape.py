"""Measure the code's shape: the figures the redesign issue asks for, as one JSON line.

Functions over 50 statements, lines of ``cli.py``, import circles between cloudfree's modules,
imports of another module's private names, bare ``ValueError``s raised, and docstring lines
that carry measured figures (a number with a unit of time, memory or quality).

    python benchmarks/code_shape.py [--detail]
"""

from __future__ import annotations

import argparse
import ast
import json
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cloudfree"
LIMIT = 50
FIGURE = re.compile(r"\d[\d.,]*\s*(?:s|ms|min|GiB|MiB|KiB|GB|MB|dB|MB/s)\b(?!`)|\d+(?:\.\d+)?\s*[x×]\s+(?:faster|slower)"
                    r"|\b(?:took|peaked at)\s+\d")
"""A measured figure: a time, a size or a quality in dB, a speed-up, "took 12" (not a size literal
such as ``"4GB"`` in an example of what an option takes, nor a shape such as 2×2)."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _statements(node: ast.AST) -> int:
    count = 0
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if isinstance(child, ast.stmt):
            count += 1
        count += _statements(child)
    return count


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(tree: ast.AST, module: str, is_package: bool, modules: set[str]):
    """Module-level and function-level imports of cloudfree modules, and private names taken."""
    edges, private = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = _resolve(module, node, is_package)
            if not target.startswith("cloudfree"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                edges.add(sub if sub in modules else target)
                if alias.name.startswith("_") and not alias.name.startswith("__") and sub not in modules:
                    private.append(f"{module} <- {target}.{alias.name}")
        elif isinstance(node, ast.Import):
            edges.update(a.name for a in node.names if a.name.startswith("cloudfree"))
    return {e for e in edges if e != module and e in modules}, private


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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

    for v in graph:
        if v not in index:
            visit(v)
    return out


def measure() -> dict:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p): p for p in files}
    long, graph, private, bare, figures = [], {}, [], [], []
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        graph[name], taken = _imports(tree, name, path.name == "__init__.py", set(modules))
        private += taken
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = _statements(node)
                if n > LIMIT:
                    long.append(f"{name}.{node.name} ({n})")
            if isinstance(node, ast.Raise) and node.exc is not None:
                call = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(call, ast.Name) and call.id == "ValueError":
                    bare.append(f"{name}:{node.lineno}")
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                doc = ast.get_docstring(node) or ""
                figures += [f"{name}: {ln.strip()}" for ln in doc.splitlines()
                            if FIGURE.search(ln) and '``"' not in ln]
    return {
        "functions_over_50_statements": sorted(long),
        "cli_py_lines": len((PACKAGE / "cli.py").read_text().splitlines()),
        "import_circles": _cycles(graph),
        "private_name_imports": sorted(private),
        "bare_value_errors": len(bare),
        "docstring_lines_with_figures": figures,
        "modules": len(modules),
        "lines": sum(len(p.read_text().splitlines()) for p in files),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detail", action="store_true", help="list every finding")
    result = measure()
    if not parser.parse_args().detail:
        result = {k: len(v) if isinstance(v, list) else v for k, v in result.items()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
