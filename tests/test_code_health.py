"""Code health that a machine can check: no function in nodeflow/ or nodes/ over 60 lines or complexity 12.

Complexity is McCabe's (1 + decision points: if/elif, loops, except clauses, boolean
operators, conditional expressions, comprehension filters, match cases, assert), the
count ``ruff``'s C901 rule makes; the test keeps the bar without needing ruff installed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROOTS = (REPO / "nodeflow", REPO / "nodes")
MAX_LINES = 60
MAX_COMPLEXITY = 12


def _functions() -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    found = []
    for root in ROOTS:
        for path in sorted(root.rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for item in ast.walk(tree):
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    found.append((f"{path.relative_to(REPO)}:{item.lineno} {item.name}", item))
    return found


def complexity(function: ast.AST) -> int:
    """McCabe complexity of one function (nested functions count on their own)."""
    score = 1
    stack = list(ast.iter_child_nodes(function))
    while stack:
        item = stack.pop()
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(item, (ast.If, ast.For, ast.AsyncFor, ast.While, ast.ExceptHandler, ast.IfExp, ast.Assert, ast.match_case)):
            score += 1
        elif isinstance(item, ast.BoolOp):
            score += len(item.values) - 1
        elif isinstance(item, ast.comprehension):
            score += len(item.ifs)
        stack.extend(ast.iter_child_nodes(item))
    return score


def test_the_complexity_measure_counts_decisions():
    tree = ast.parse("def f(a, b):\n    if a and b:\n        return [x for x in a if x]\n    for i in b:\n        pass\n")
    assert complexity(tree.body[0]) == 1 + 1 + 1 + 1 + 1


FUNCTIONS = _functions()


@pytest.mark.parametrize("limit", ["lines", "complexity"])
def test_no_function_in_the_runtime_is_too_long_or_too_complex(limit):
    if limit == "lines":
        over = [f"{where} ({f.end_lineno - f.lineno + 1} lines)" for where, f in FUNCTIONS if f.end_lineno - f.lineno + 1 > MAX_LINES]
    else:
        over = [f"{where} (complexity {c})" for where, f in FUNCTIONS if (c := complexity(f)) > MAX_COMPLEXITY]
    assert not over, "\n".join(over)


def test_no_merge_conflict_markers_in_tracked_text() -> None:
    """A merge resolved by hand leaves no `<<<<<<<` / `=======` / `>>>>>>>` lines behind."""
    import subprocess

    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    markers = ("<<<<<<< ", ">>>>>>> ")
    found = []
    for name in listed.stdout.splitlines():
        path = REPO / name
        if path.suffix not in {".py", ".md", ".js", ".json", ".html", ".css", ".toml", ".cfg", ".txt"} or not path.is_file():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if line.startswith(markers) or line == "=======":
                found.append(f"{name}:{number}")
    assert not found, f"merge conflict markers left in: {found}"
