"""No product function is over 60 lines or takes more than five positional parameters.

A longer function is several steps that deserve names; a sixth positional argument is one a caller
will pass in the wrong place. Keyword-only parameters (after `*`) are not counted, nor self and cls.
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAX_LINES = 60
MAX_POSITIONAL = 5
NOT_PRODUCT = {"tests", "benchmarks", "migrations", ".venv", ".cache", "node_modules"}


def product_files() -> list[Path]:
    return sorted(p for p in REPO.rglob("*.py") if not NOT_PRODUCT & set(p.relative_to(REPO).parts))


def functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def positional(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    names = [a.arg for a in node.args.posonlyargs + node.args.args]
    return len([n for n in names if n not in ("self", "cls")])


def too_big(path: Path, root: Path = REPO) -> list[str]:
    where = path.relative_to(root)
    found = []
    for node in functions(path):
        lines = node.end_lineno - node.lineno + 1 if node.end_lineno else 0
        if lines > MAX_LINES or positional(node) > MAX_POSITIONAL:
            found.append(f"{where}:{node.lineno} {node.name}: {lines} lines, {positional(node)} positional")
    return found


def test_the_scan_sees_the_product():
    files = {str(p.relative_to(REPO)) for p in product_files()}
    assert {"axon/detector/features.py", "telemetry/models.py", "audit/services.py", "manage.py"} <= files
    assert not any(f.startswith(("tests/", "benchmarks/")) or "/migrations/" in f for f in files)


def test_no_product_function_is_over_60_lines_or_takes_more_than_5_positional_parameters():
    assert [problem for path in product_files() for problem in too_big(path)] == []


def test_the_rule_sees_a_long_function_and_a_long_signature(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    sample = tmp_path / "sample.py"
    sample.write_text(f"def long():\n{body}\n\n\ndef wide(self, a, b, c, d, e, f, *, g=1):\n    pass\n\n\n"
                      f"def fine(self, a, b, c, d, e, *, f=1, g=2):\n    pass\n")
    assert too_big(sample, tmp_path) == [
        f"sample.py:1 long: {MAX_LINES + 1} lines, 0 positional", "sample.py:64 wide: 2 lines, 6 positional"]
