"""The shape of the package: no import circle among seqkit's modules."""
import ast
from pathlib import Path

import seqkit

PACKAGE = Path(seqkit.__file__).resolve().parent


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The seqkit modules ``path`` imports, at the top or inside a function."""
    name = _name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else \
                node.module
            found |= {f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target
                      for a in node.names}
    return {m for m in found if m in modules and m != name}


def test_no_module_imports_one_that_imports_it_back():
    files = {_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: _imports(path, set(files)) for name, path in files.items()}
    cycles, state = [], {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_commands_ask_the_predictor_not_the_task_string():
    """cli.py, export.py and predict.py compare nothing with a task's name: a checkpoint
    names its ``seqkit.inference`` class, and that class knows what its task does."""
    tasks = {p.stem for p in (PACKAGE.parent / "configs" / "task").glob("*.yaml")} or \
        {"sentiment", "ner", "translation", "summarization", "lm", "music"}
    for name in ("cli", "export", "predict"):
        tree = ast.parse((PACKAGE / f"{name}.py").read_text())
        compared = {c.value for node in ast.walk(tree) if isinstance(node, ast.Compare)
                    for side in [node.left, *node.comparators] for c in ast.walk(side)
                    if isinstance(c, ast.Constant)}
        assert not compared & tasks, (name, compared & tasks)
