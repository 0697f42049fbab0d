"""Dependencies run one way: axon → telemetry → (audit, voltaxe). A lower app offers a seam instead."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The lower layers, and the apps they may not import. voltaxe's urls, settings and AppConfig wiring are exempt.
RULES = {
    "telemetry": {"axon"},
    "audit": {"axon", "telemetry"},
    **{f"voltaxe/{m}.py": {"axon", "telemetry", "audit"}
       for m in ("clientip", "ratelimits", "rates", "tokens", "api", "views", "roles", "admin_base", "schema", "nav",
                 "schedules")},
}


def imported_apps(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("place", sorted(RULES))
def test_a_lower_layer_imports_no_app_above_it(place):
    files = [REPO / place] if place.endswith(".py") else sorted((REPO / place).rglob("*.py"))
    wrong = {str(f.relative_to(REPO)): sorted(imported_apps(f) & RULES[place]) for f in files}
    assert not {f: apps for f, apps in wrong.items() if apps}
