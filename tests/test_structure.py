"""The layout rules of DESIGN.md, checked on the source: no import cycles, what recipes/ and runtime/
may import, and small functions and modules.

Read with ``ast`` only (nothing is imported or executed). Module names follow setup.cfg's package_dir,
so recipes/ptq.py is compressor.recipes.ptq as installed; imports inside functions count.
"""

from __future__ import annotations

import ast
import configparser
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 60  # from the `def` line to the function's last line, decorators excluded
MAX_MODULE_LINES = 300
SIZED_FOLDERS = ("compressor", "recipes", "runtime")

RECIPES_MUST_NOT_IMPORT = tuple(
    f"compressor.{name}" for name in ("export", "commands", "pipeline", "tuning", "reports", "bundle", "inspection")
)
RUNTIME_MUST_NOT_IMPORT = ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization")


def package_dirs() -> dict[str, str]:
    """setup.cfg's package_dir: installed package name -> folder, longest name first."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    pairs = [line.split("=") for line in cfg["options"]["package_dir"].strip().splitlines() if "=" in line]
    mapping = {name.strip(): folder.strip() for name, folder in pairs}
    return dict(sorted(mapping.items(), key=lambda kv: -len(kv[0])))


@dataclass(frozen=True)
class Import:
    target: str  # absolute dotted name as written (relative imports resolved)
    line: int


@dataclass
class Module:
    name: str
    path: Path
    imports: list[Import]

    @property
    def where(self) -> str:
        return str(self.path.relative_to(ROOT))


def _module_name(path: Path, package: str, folder: str) -> str:
    parts = [package, *path.relative_to(ROOT / folder).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST, name: str, is_package: bool) -> list[Import]:
    """Every import in the module, at any depth; ``from a import b`` yields both a.b and a."""
    package = name if is_package else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [Import(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            out += [Import(f"{base}.{alias.name}", node.lineno) for alias in node.names]
            out.append(Import(base, node.lineno))
    return out


def project_modules() -> dict[str, Module]:
    modules = {}
    for package, folder in package_dirs().items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            name = _module_name(path, package, folder)
            if name in modules:  # compressor/ does not hold recipes/: but a nested mapping would
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            modules[name] = Module(name, path, _imports(tree, name, path.name == "__init__.py"))
    return modules


def _resolve(target: str, modules: dict[str, Module]) -> str | None:
    """The project module an imported name lives in (a.b.func -> a.b), or None outside the project."""
    while target:
        if target in modules:
            return target
        target = target.rpartition(".")[0]
    return None


def import_graph(modules: dict[str, Module]) -> dict[str, dict[str, int]]:
    """module -> {imported module: line of the first such import}. Importing one's own package (or an
    ancestor) is left out: Python runs a package's __init__ before any of its modules anyway."""
    graph: dict[str, dict[str, int]] = {}
    for name, mod in modules.items():
        edges: dict[str, int] = {}
        own_package = name if mod.path.name == "__init__.py" else name.rpartition(".")[0]
        for imp in mod.imports:
            target = _resolve(imp.target, modules)
            if target and target != name and target != own_package and not name.startswith(target + "."):
                edges.setdefault(target, imp.line)
        graph[name] = edges
    return graph


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the components of more than one module (the cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles():
    modules = project_modules()
    graph = import_graph(modules)
    cycles = strongly_connected(graph)
    report = []
    for component in cycles:
        members = set(component)
        report.append("cycle: " + " <-> ".join(component))
        report += [
            f"  {modules[a].where}:{line}: {a} imports {b}"
            for a in component
            for b, line in sorted(graph[a].items())
            if b in members
        ]
    if cycles:
        pytest.fail(f"{len(cycles)} import cycle(s):\n" + "\n".join(report), False)


def _is_within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _forbidden(name: str, target: str) -> str | None:
    """Why module ``name`` may not import ``target``, or None when it may."""
    if _is_within(name, ("compressor.recipes",)) and _is_within(target, RECIPES_MUST_NOT_IMPORT):
        return "recipes/ must not import the exporter, pipeline, tuning, reports, bundle, inspection or CLI"
    if not _is_within(name, ("compressor.runtime",)):
        return None
    if _is_within(target, RUNTIME_MUST_NOT_IMPORT):
        return "runtime/ runs on the device: no TensorFlow, Keras or tfmot"
    # (the bare "compressor" of `from compressor import x` is judged by its compressor.x)
    if target.startswith("compressor.") and not _is_within(target, ("compressor.runtime",)):
        return "runtime/ imports nothing of compressor outside compressor.runtime"
    return None


def test_recipes_and_runtime_import_only_what_they_may():
    offenders: dict[tuple[str, int], str] = {}
    for name, mod in project_modules().items():
        # shortest first: `from a.b import c` is reported once, as a.b
        for imp in sorted(mod.imports, key=lambda i: len(i.target)):
            why = _forbidden(name, imp.target)
            if why and (mod.where, imp.line) not in offenders:
                offenders[(mod.where, imp.line)] = f"{mod.where}:{imp.line}: imports {imp.target}: {why}"
    if offenders:
        pytest.fail(f"{len(offenders)} forbidden import(s):\n" + "\n".join(sorted(offenders.values())), False)


def test_only_the_keras_shim_imports_tensorflow():
    """TF_USE_LEGACY_KERAS and the log silencing must happen before TensorFlow's first import:
    everything else asks compressor.keras_shim (DESIGN.md, rule 4)."""
    offenders = [
        f"{mod.where}:{imp.line}: imports {imp.target}"
        for name, mod in project_modules().items()
        if name != "compressor.keras_shim"
        for imp in mod.imports
        if _is_within(imp.target, RUNTIME_MUST_NOT_IMPORT)
    ]
    if offenders:
        pytest.fail("TensorFlow/Keras imported outside compressor/keras_shim.py:\n" + "\n".join(offenders), False)


def test_functions_and_modules_are_small():
    offenders = []
    for folder in SIZED_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            text = path.read_text(encoding="utf-8")
            where = path.relative_to(ROOT)
            lines = len(text.splitlines())
            if lines > MAX_MODULE_LINES:
                offenders.append(f"{where}:1: module of {lines} lines (max {MAX_MODULE_LINES})")
            for node in ast.walk(ast.parse(text, filename=str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = node.end_lineno - node.lineno + 1
                    if length > MAX_FUNCTION_LINES:
                        offenders.append(
                            f"{where}:{node.lineno}: function {node.name} of {length} lines (max {MAX_FUNCTION_LINES})"
                        )
    if offenders:
        pytest.fail(f"{len(offenders)} over the size limits:\n" + "\n".join(offenders), False)
