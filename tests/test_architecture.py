"""The package's shape: no import cycle, between modules or between top-level parts, read from
the source with the standard library's ``ast`` (every import counts, lazy ones included)."""

import ast
from pathlib import Path

import kdlens

ROOT = Path(kdlens.__file__).parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """kdlens modules imported anywhere in ``path`` (``from a.b import c`` -> a.b.c if a module)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                bits = package.split(".")
                bits = bits[: len(bits) - node.level + 1]
                base = ".".join(bits + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target.startswith("kdlens") and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    files = sorted(ROOT.rglob("*.py"))
    modules = {_module_name(f) for f in files}
    return {_module_name(f): _imports(f, modules) for f in files}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if state.get(nxt) is None and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_between_modules():
    graph = _graph()
    # A package's __init__ re-exports its modules; an edge into it from its own modules is the
    # parent being loaded first, not a cycle of the design.
    for name, deps in graph.items():
        graph[name] = {d for d in deps if not name.startswith(d + ".")}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_no_import_cycle_between_top_level_parts():
    """data, models, distill, run, train, stages...: a part imports only from parts below it."""
    parts: dict[str, set[str]] = {}
    for name, deps in _graph().items():
        bits = name.split(".")
        if len(bits) < 2 or bits[1] in ("cli", "__main__"):
            continue
        for dep in deps:
            dep_bits = dep.split(".")
            if len(dep_bits) > 1 and dep_bits[1] != bits[1]:
                parts.setdefault(bits[1], set()).add(dep_bits[1])
    assert _cycle(parts) is None, " -> ".join(_cycle(parts))


def test_the_detector_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
