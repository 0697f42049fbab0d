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


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, by its full name (`from a import b` counts as a.b: b may be a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def imported_apps(path: Path) -> set[str]:
    return {name.split(".")[0] for name in imported_modules(path)}


@pytest.mark.parametrize("place", sorted(RULES))
def test_a_lower_layer_imports_no_app_above_it(place):
    files = [REPO / place] if place.endswith(".py") else sorted((REPO / place).rglob("*.py"))
    wrong = {str(f.relative_to(REPO)): sorted(imported_apps(f) & RULES[place]) for f in files}
    assert not {f: apps for f, apps in wrong.items() if apps}


# The pure core takes values and gives values: no framework, no database, no app. Its one way out is
# telemetry's name normalizer, itself pure (checked here too): the detector reads the vocabulary
# ingestion writes (an orphan's parent, what counts as an interpreter).
PURE = ("axon/detector", "telemetry/normalize.py")
FRAMEWORKS = {"django", "rest_framework", "django_q"}
APPS = {"axon", "telemetry", "audit", "voltaxe"}
PURE_MAY_IMPORT = ("axon.detector.", "telemetry.normalize.")


def impure_imports(path: Path) -> list[str]:
    return sorted(name for name in imported_modules(path)
                  if name.split(".")[0] in FRAMEWORKS
                  or (name.split(".")[0] in APPS and not name.startswith(PURE_MAY_IMPORT)))


@pytest.mark.parametrize("place", PURE)
def test_the_pure_core_imports_no_framework_and_no_app(place):
    files = [REPO / place] if place.endswith(".py") else sorted((REPO / place).rglob("*.py"))
    assert files
    wrong = {str(f.relative_to(REPO)): impure_imports(f) for f in files}
    assert not {f: names for f, names in wrong.items() if names}
