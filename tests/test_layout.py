"""The code's shape, as the project promises it: pure domain packages, one room per service, short functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers.paths import REPO

DOMAIN = ("imgcore", "detector", "embedder", "ann_index")
PACKAGES = (*DOMAIN, "services")
MAX_FUNCTION_LINES = 60
# Only what belongs to no single service stays loose in services/ (the package marker included).
MAX_LOOSE_SERVICE_MODULES = 4
SERVICE_ROOMS = ("detector", "embedder", "index", "gateway", "common", "cli")


def _modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", DOMAIN)
def test_domain_packages_know_nothing_of_http_settings_or_services(package: str) -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(bad)
        for path in _modules(package)
        if (bad := _imported(path) & {"fastapi", "starlette", "uvicorn", "pydantic_settings", "services"})
    }
    assert offenders == {}


def test_no_function_is_longer_than_the_limit() -> None:
    long = []
    for package in PACKAGES:
        for path in _modules(package):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []


def test_services_has_one_package_per_service_and_few_loose_modules() -> None:
    services = REPO / "services"
    loose = sorted(p.name for p in services.glob("*.py"))
    assert len(loose) <= MAX_LOOSE_SERVICE_MODULES, loose
    for room in SERVICE_ROOMS:
        assert (services / room / "__init__.py").is_file(), room
