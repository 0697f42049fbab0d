"""The layering of tests/test_layers.py, for what Python imports cannot show: templates and scripts.

A template of a lower layer that names an upper app's URL (`{% url %}`), template (`{% include %}`,
`{% extends %}`) or static file (`{% static %}`) breaks without that app, as an import would; so does
a lower layer's script that names the upper app's addresses or files, or its Python naming the upper
app's templates. What belongs to an app: the URL names in its urls.py, the files under its
templates/ and static/.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# A layer's templates, scripts and Python, and the apps above it. The project's templates/ and static/ are
# rendered by every app's pages (base.html), so they may name no app above them either.
LAYERS = {
    "telemetry": {"dirs": ["telemetry"], "above": {"axon"}},
    "audit": {"dirs": ["audit"], "above": {"axon", "telemetry"}},
    "project": {"dirs": ["templates", "static"], "above": {"axon"}},
}
TAG = re.compile(r"""{%\s*(url|include|extends|static)\s+(['"])(.+?)\2""")


def url_names(app: str) -> set[str]:
    """Every `name="..."` of the app's urls.py."""
    urls = REPO / app / "urls.py"
    if not urls.exists():
        return set()
    return {kw.value.value for node in ast.walk(ast.parse(urls.read_text())) if isinstance(node, ast.Call)
            for kw in node.keywords if kw.arg == "name" and isinstance(kw.value, ast.Constant)}


def url_paths(app: str) -> set[str]:
    """The fixed start of each of the app's routes (`live-telemetry/retrain/`), for scripts that would hard-code one."""
    urls = REPO / app / "urls.py"
    if not urls.exists():
        return set()
    starts = set()
    for node in ast.walk(ast.parse(urls.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("path", "re_path") and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                fixed = re.split(r"[<^?$(\\]", first.value.lstrip("^"))[0]
                if "/" in fixed.rstrip("/"):  # "alerts/" alone would match too much
                    starts.add("/" + fixed)
    return starts | ({f"/api/{app}/"} if (REPO / app / "urls.py").exists() else set())


def files_under(app: str, kind: str) -> set[str]:
    root = REPO / app / kind
    return {str(f.relative_to(root)) for f in root.rglob("*") if f.is_file()} if root.exists() else set()


def owned(apps: set[str]) -> dict[str, set[str]]:
    return {"url": set().union(*(url_names(a) for a in apps)),
            "template": set().union(*(files_under(a, "templates") for a in apps)),
            "static": set().union(*(files_under(a, "static") for a in apps)),
            "path": set().union(*(url_paths(a) for a in apps))}


def layer_files(layer: str, suffixes: tuple[str, ...]) -> list[Path]:
    found = []
    for d in LAYERS[layer]["dirs"]:
        found += [f for f in sorted((REPO / d).rglob("*")) if f.suffix in suffixes and "migrations" not in f.parts]
    return found


def test_what_belongs_to_axon_is_found():
    """Else the rules below would pass for want of anything to look for."""
    axon = owned({"axon"})
    assert {"live-retrain", "axon-retrain", "alert"} <= axon["url"]
    assert {"axon/live/panic.html", "axon/_training.html", "admin/axon/trainingrun/retrain.html"} <= axon["template"]
    assert "axon/panel.js" in axon["static"] and "/live-telemetry/retrain/" in axon["path"]


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_a_lower_layers_templates_name_no_url_template_or_file_of_an_app_above(layer):
    above = owned(LAYERS[layer]["above"])
    kinds = {"url": "url", "include": "template", "extends": "template", "static": "static"}
    wrong = [f"{f.relative_to(REPO)}: {{% {tag} '{name}' %}}"
             for f in layer_files(layer, (".html", ".txt")) for tag, _, name in TAG.findall(f.read_text())
             if name in above[kinds[tag]]]
    assert not wrong


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_a_lower_layers_scripts_name_no_address_or_file_of_an_app_above(layer):
    above = owned(LAYERS[layer]["above"])
    wrong = [f"{f.relative_to(REPO)}: {needle}" for f in layer_files(layer, (".js",))
             for needle in sorted(above["path"] | above["static"]) if needle in f.read_text()]
    assert not wrong


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_a_lower_layers_python_names_no_template_of_an_app_above(layer):
    above = owned(LAYERS[layer]["above"])
    wrong = [f"{f.relative_to(REPO)}: {node.value}" for f in layer_files(layer, (".py",))
             for node in ast.walk(ast.parse(f.read_text()))
             if isinstance(node, ast.Constant) and node.value in above["template"] | above["static"]]
    assert not wrong
