"""The shape of `utils/` that CONTRIBUTING.md promises: small modules, no import circle, `__all__`
everywhere, and every intervention on a model going through `utils.hooks`."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "utils"
MAX_LINES = 600
# Hook plumbing that only utils.hooks may use: each of these adds or removes hooks behind the
# caller's back (``model.hooks()`` and ``run_with_hooks`` reset every temporary hook on exit).
HOOK_PLUMBING = ("add_hook", "remove_hooks", "reset_hooks", "run_with_hooks", "hooks")
NAME_HOMES = {"hooks.py", "sublayers.py"}  # where hook names may be spelled out


def _modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imported(module: str, node: ast.AST) -> list[str]:
    """The package modules an import statement in ``module`` reaches."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in MODULES]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative import: resolve against the importing module's package
        package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    out = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        if sub in MODULES:
            out.append(sub)
        elif base in MODULES:
            out.append(base)
    return out


def _import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its body (functions included)."""
    graph = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        graph[name] = {t for node in ast.walk(tree) for t in _imported(name, node) if t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def _is_package_init_edge(a: str, b: str) -> bool:
    """A package's ``__init__`` importing its own submodules is how a package re-exports names."""
    return b.startswith(a + ".") and MODULES[a].name == "__init__.py"


def test_no_module_is_over_the_size_limit():
    sizes = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert {n: s for n, s in sizes.items() if s > MAX_LINES} == {}


def test_the_import_graph_has_no_circle():
    graph = _import_graph()
    graph = {a: {b for b in bs if not _is_package_init_edge(a, b)} for a, bs in graph.items()}
    assert _cycles(graph) == []


def test_every_module_imports_on_its_own():
    """Each module imported first in a clean module table, so no import order hides a circle."""
    script = (
        "import importlib, sys\n"
        f"names = {sorted(MODULES)!r}\n"
        "bad = []\n"
        "for name in names:\n"
        "    for loaded in [m for m in sys.modules if m == 'utils' or m.startswith('utils.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        bad.append(f'{name}: {type(exc).__name__}: {exc}')\n"
        "print('\\n'.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


def test_every_public_module_declares_all():
    missing = [
        name
        for name, path in MODULES.items()
        if name != "utils" and "__all__" not in {
            t.id
            for node in ast.parse(path.read_text()).body
            if isinstance(node, (ast.Assign, ast.AnnAssign))
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(t, ast.Name)
        }
    ]
    assert missing == []


def _calls_outside_hooks() -> list[str]:
    """Calls of hook plumbing (``x.add_hook(...)``, ``model.hooks(...)`` ...) outside utils.hooks."""
    found = []
    for name, path in MODULES.items():
        if name == "utils.hooks":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in HOOK_PLUMBING
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.func.attr}(")
    return found


def test_every_hook_goes_through_utils_hooks():
    assert _calls_outside_hooks() == []


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings or bare string statements."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }


def _spelled_hook_names() -> list[str]:
    """String literals (f-strings included) outside utils.hooks/sublayers that spell a hook name."""
    found = []
    for path in MODULES.values():
        if path.name in NAME_HOMES and path.parent == PACKAGE:
            continue
        tree = ast.parse(path.read_text())
        skip = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                text = node.value
                if text.startswith("blocks.") or text.startswith("hook_") or ".hook_" in text:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {text!r}")
    return found


def test_hook_names_are_built_in_one_place():
    assert _spelled_hook_names() == []


@pytest.mark.parametrize(
    "graph, expected",
    [
        ({"a": {"b"}, "b": {"a"}, "c": set()}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ],
)
def test_the_cycle_finder_finds_circles_and_only_circles(graph, expected):
    assert _cycles(graph) == expected
