"""The import graph of prm_jax: no cycles (function-level imports included), and model, losses,
train step and search import without the data stack's tfds / grain."""

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PKG = ROOT / "prm_jax"


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph() -> dict:
    """Returns {module: set of prm_jax modules it imports anywhere in its source}."""
    mods = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("prm_jax")}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("prm_jax"):
                for a in node.names:  # `from prm_jax import loop` names a module; `from prm_jax.x import f` not
                    full = f"{node.module}.{a.name}"
                    deps.add(full if full in mods else node.module)
        graph[name] = {d for d in deps if d in mods and d != name and d != "prm_jax"}
    return graph


def find_cycle(graph: dict):
    """Returns one import cycle as a list of modules, or None (depth-first search)."""
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return stack[stack.index(d) :] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_find_cycle_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_among_prm_jax_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_core_modules_import_without_tfds_and_grain():
    code = (
        "import sys; import prm_jax.model, prm_jax.losses, prm_jax.train, prm_jax.search, prm_jax.verifier, "
        "prm_jax.sampling, prm_jax.evaluate, prm_jax.selection; "
        "bad = [m for m in ('tensorflow_datasets', 'grain', 'tensorflow') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr[-2000:]


def _docstrings(tree) -> set:
    """Returns the ids of the docstring nodes of a module and its classes / functions."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def outside_references(source: str) -> list[str]:
    """Returns the imports of `experiments` / `tests` and the (non-docstring) string constants that name
    a path under experiments/ or tests/ in one module's source."""
    import re

    tree = ast.parse(source)
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in ("experiments", "tests")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("experiments", "tests"):
            found.append(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if re.search(r"(^|[/\\])(experiments|tests)([/\\]|$)", node.value) or node.value in (
                "experiments",
                "tests",
            ):
                found.append(repr(node.value))
    return found


def test_the_outside_reference_scan_finds_planted_ones():
    planted = (
        'import tests.x\nfrom experiments import a\np = "tests/fixtures/x.json"\nq = os.path.join(r, "experiments")\n'
    )
    assert len(outside_references(planted)) == 4
    assert outside_references('"""see experiments/arith_prm.py"""\nx = "latest"\n') == []


def test_no_prm_jax_module_imports_or_opens_experiments_or_tests():
    bad = {}
    for path in PKG.rglob("*.py"):
        refs = outside_references(path.read_text())
        if refs:
            bad[str(path.relative_to(ROOT))] = refs
    assert not bad, bad
