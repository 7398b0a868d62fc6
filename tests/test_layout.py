"""The package layout is the architecture (docs/design.md, "Layers of the package"): every
import, at module level or inside a function, runs from a stage to a lower one, and no two
modules import each other."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "tfnas"
# stage (top-level module or package under tfnas/) → rank; imports run to lower ranks only
RANKS = {
    "__init__": 0, "errors": 0, "quiet": 0,
    "run": 1, "data": 1, "optimizers": 1,
    "blocks": 2,
    "space": 3,
    "nets": 4, "latency": 4,
    "costs": 5,
    "cli": 6, "deploy": 6,
    "train": 7,
    "search": 8,
    "sweep": 9, "notebook": 9,
}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """tfnas modules `path` imports (anywhere but under `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and getattr(node.test, "id", "") == "TYPE_CHECKING" for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and \
                (node.module or "").startswith("tfnas"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if (ROOT.parent / sub.replace(".", "/")).with_suffix(".py")
                          .exists() or (ROOT.parent / sub.replace(".", "/")).is_dir()
                          else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("tfnas")}
    return found


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


GRAPH = {_module(p): _imports(p) for p in ROOT.rglob("*.py")}


def test_every_stage_has_a_rank():
    assert {_stage(m) for m in GRAPH} == set(RANKS)


def test_imports_run_down_the_stages_only():
    upward = sorted(f"{a} -> {b}" for a, targets in GRAPH.items() for b in targets
                    if _stage(a) != _stage(b) and RANKS[_stage(b)] >= RANKS[_stage(a)])
    assert not upward, upward


def test_no_import_cycles():
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for target in sorted(GRAPH.get(module, ())):
            if target not in GRAPH or target == module:
                continue
            if state.get(target) == 1:
                return path + [module, target]
            if target not in state:
                cycle = visit(target, path + [module])
                if cycle:
                    return cycle
        state[module] = 2
        return None

    for module in sorted(GRAPH):
        if module not in state:
            cycle = visit(module, [])
            assert cycle is None, " -> ".join(cycle)
