"""The arrows between the apps run one way (dpd/__init__.py): a maintainer who
adds an import against them learns it here, not from an import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FEATURE_APPS = {"annotations", "indexing", "dlm_bridge"}
# dpd's modules that serve the API or wire the project: they may call a
# feature app's public functions. The catalogue's own modules may not.
DPD_INTERFACE = (
    "dpd.api",
    "dpd.status",
    "dpd.home",
    "dpd.urls",
    "dpd.settings",
    "dpd.management",
    "dpd.sdp_watcher",
    "dpd.service_sides",
    "dpd.ops",
)


def imported_apps(path: Path) -> set[str]:
    """The top-level packages a module imports (at any depth of its code)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def modules(package: str) -> list[tuple[str, Path]]:
    return [
        (".".join(path.relative_to(ROOT).with_suffix("").parts), path)
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
    ]


@pytest.mark.parametrize(("name", "path"), modules("dpd"), ids=lambda v: str(v))
def test_the_catalogue_imports_no_feature_app(name, path):
    if name.startswith(DPD_INTERFACE):
        return
    assert not imported_apps(path) & FEATURE_APPS


@pytest.mark.parametrize("app", sorted(FEATURE_APPS))
def test_a_feature_app_imports_no_other_feature_app(app):
    for name, path in modules(app):
        assert not imported_apps(path) & (FEATURE_APPS - {app}), name
