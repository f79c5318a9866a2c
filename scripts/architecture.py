"""Measure the shape of the source tree: module sizes, import cycles and what the core imports.

    .venv/bin/python scripts/architecture.py            # table + verdict; exit 1 when a rule is broken
    .venv/bin/python scripts/architecture.py --json     # the same as one JSON object

Rules (docs/architecture.md):

* no module under ``src/napari_patchdx`` over ``--max-lines`` lines (default 600);
* no import cycle between the package's modules, counting every import statement — at module level, inside
  functions (lazy imports) and inside ``try`` blocks; only ``if TYPE_CHECKING:`` blocks are left out, since they
  never run;
* no core module (anything outside ``napari_patchdx._napari``) imports napari, Qt (``qtpy``, ``PyQt5/6``,
  ``PySide2/6``), magicgui, superqt, vispy or ``napari_patchdx._napari``, lazily or not;
* no module imports a private name (``_x``) from another of the package's modules.

An import ``from .pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg`` (its
``__init__``). Importing a submodule also runs its parent packages' ``__init__`` modules: those edges are added too,
except to the importing module's own parent packages (Python has initialised them before the module runs).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "napari_patchdx"
SRC = ROOT / "src" / PACKAGE
GUI_ROOTS = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt", "vispy")
ADAPTERS = f"{PACKAGE}._napari"


@dataclass
class Module:
    name: str
    path: Path
    lines: int
    is_package: bool
    imports: list[tuple[str, int]] = field(default_factory=list)  # (absolute module, line)
    names: list[tuple[str, str, int]] = field(default_factory=list)  # (absolute module, imported name, line)


def _module_name(path: Path) -> tuple[str, bool]:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def _type_checking_lines(tree: ast.AST) -> set[int]:
    """Line numbers inside ``if TYPE_CHECKING:`` blocks."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                for child in node.body:
                    skip.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return skip


def load_modules() -> dict[str, Module]:
    """Every module of the package with its size and the imports it makes."""
    modules: dict[str, Module] = {}
    for path in sorted(SRC.rglob("*.py")):
        name, is_package = _module_name(path)
        text = path.read_text(encoding="utf-8")
        modules[name] = Module(name, path, len(text.splitlines()), is_package)
    for mod in modules.values():
        tree = ast.parse(mod.path.read_text(encoding="utf-8"))
        skip = _type_checking_lines(tree)
        base = mod.name.split(".") if mod.is_package else mod.name.split(".")[:-1]
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    mod.imports.append((alias.name, node.lineno))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = base[: len(base) - (node.level - 1)]
                    target = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    candidate = f"{target}.{alias.name}"
                    if candidate in modules:
                        mod.imports.append((candidate, node.lineno))
                    else:
                        mod.imports.append((target, node.lineno))
                        mod.names.append((target, alias.name, node.lineno))
    return modules


def _with_parents(target: str, modules: dict[str, Module]) -> list[str]:
    """``target`` and the package ``__init__`` modules that importing it runs (outermost first)."""
    parts = target.split(".")
    out = [".".join(parts[:k]) for k in range(2, len(parts) + 1)]
    return [m for m in out if m in modules]


def import_graph(modules: dict[str, Module]) -> dict[str, set[str]]:
    """Edges between the package's own modules (the top-level ``napari_patchdx/__init__`` is lazy: left out as a
    target unless imported by name)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for mod in modules.values():
        for target, _ in mod.imports:
            if target == PACKAGE:
                graph[mod.name].add(PACKAGE)
                continue
            if not target.startswith(PACKAGE + "."):
                continue
            chain = _with_parents(target, modules)
            for dep in chain:
                direct = dep == chain[-1] and dep == target
                # a module's own parent packages are initialised before it runs: only a direct import counts
                if dep != mod.name and (direct or not mod.name.startswith(dep + ".")):
                    graph[mod.name].add(dep)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def gui_imports(modules: dict[str, Module]) -> list[str]:
    """``module:line imports X`` for every core module importing napari / Qt / the adapters."""
    out = []
    for mod in modules.values():
        if mod.name == ADAPTERS or mod.name.startswith(ADAPTERS + "."):
            continue
        for target, line in mod.imports:
            root = target.split(".")[0]
            if root in GUI_ROOTS or target == ADAPTERS or target.startswith(ADAPTERS + "."):
                out.append(f"{mod.name}:{line} imports {target}")
    return sorted(out)


def private_imports(modules: dict[str, Module]) -> list[str]:
    """``module:line imports _name from other`` for private names taken from another module of the package."""
    out = []
    for mod in modules.values():
        for target, name, line in mod.names:
            if target.startswith(PACKAGE) and name.startswith("_") and not name.startswith("__") and target != mod.name:
                out.append(f"{mod.name}:{line} imports {name} from {target}")
    return sorted(out)


def measure(max_lines: int = 600) -> dict[str, object]:
    """Everything the rules look at, as one JSON-ready dict."""
    modules = load_modules()
    graph = import_graph(modules)
    sizes = sorted(((m.lines, m.name) for m in modules.values()), reverse=True)
    return {
        "modules": len(modules),
        "source_lines": sum(m.lines for m in modules.values()),
        "largest": [{"module": n, "lines": k} for k, n in sizes[:10]],
        "over_limit": [{"module": n, "lines": k} for k, n in sizes if k > max_lines],
        "max_lines": max_lines,
        "cycles": cycles(graph),
        "core_gui_imports": gui_imports(modules),
        "private_imports": private_imports(modules),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-lines", type=int, default=600)
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args(argv)
    report = measure(args.max_lines)
    broken = bool(report["over_limit"] or report["cycles"] or report["core_gui_imports"] or report["private_imports"])
    if not args.json:
        print(f"{report['modules']} modules, {report['source_lines']} lines")
        print(f"{'largest modules':<52} lines")
        for row in report["largest"]:
            print(f"  {row['module']:<50} {row['lines']:>5}")
        for key, title in (
            ("over_limit", f"modules over {args.max_lines} lines"),
            ("cycles", "import cycles"),
            ("core_gui_imports", "core imports of napari / Qt / _napari"),
            ("private_imports", "private names imported across modules"),
        ):
            items = report[key]
            print(f"{title}: {len(items)}")
            for item in items:
                print(f"  {item}")
        print("verdict:", "BROKEN" if broken else "ok")
    print(json.dumps(report))
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
