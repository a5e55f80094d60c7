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


# Top-level packages and what each may import: a DAG. The embedder's trainer reads catalogs through
# ann_index.catalog; nothing in ann_index needs the embedder's code (it embeds through a protocol).
ALLOWED_PACKAGE_IMPORTS: dict[str, set[str]] = {
    "imgcore": set(),
    "detector": {"imgcore"},
    "ann_index": {"imgcore"},
    "embedder": {"imgcore", "ann_index"},
    "services": {"imgcore", "detector", "embedder", "ann_index"},
}
# ann_index's rooms by rank: a room imports only rooms of a lower rank (the serving side never the build side).
ANN_INDEX_RANKS: dict[str, int] = {
    "files": 0,
    "items": 0,
    "thumbs": 0,
    "catalog": 1,
    "version": 1,
    "serving": 2,
    "build": 2,
    "changes": 3,
    "shards": 3,
    "evaluate": 4,
}
MAX_LOOSE_ANN_INDEX_MODULES = 8


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {package: set() for package in PACKAGES}
    for package in PACKAGES:
        for path in _modules(package):
            graph[package] |= {name for name in _imported(path) if name in PACKAGES and name != package}
    return graph


def test_top_level_packages_import_only_what_their_layer_allows() -> None:
    graph = _package_graph()
    assert {package: sorted(used - ALLOWED_PACKAGE_IMPORTS[package]) for package, used in graph.items()} == {
        package: [] for package in PACKAGES
    }


def test_the_allowed_package_imports_have_no_cycle() -> None:
    from graphlib import TopologicalSorter

    order = list(TopologicalSorter(ALLOWED_PACKAGE_IMPORTS).static_order())  # CycleError on a cycle
    assert order[0] == "imgcore" and order[-1] == "services"


def test_the_embedder_reads_only_catalogs_from_ann_index() -> None:
    used = {
        str(path.relative_to(REPO)): sorted(n for n in _imported_modules(path) if n.split(".")[0] == "ann_index")
        for path in _modules("embedder")
    }
    assert {path: [n for n in names if not n.startswith("ann_index.catalog")] for path, names in used.items()} == {
        path: [] for path in used
    }


def _room(module: str) -> str:
    return module.split(".")[1]


def test_ann_index_rooms_import_only_lower_rooms() -> None:
    upward = []
    for path in _modules("ann_index"):
        rel = path.relative_to(REPO / "ann_index")
        if rel.name == "__init__.py" and len(rel.parts) == 1:
            continue
        own = rel.parts[0].removesuffix(".py")
        assert own in ANN_INDEX_RANKS, f"ann_index/{rel}: a room missing from ANN_INDEX_RANKS"
        for name in _imported_modules(path):
            if name.startswith("ann_index.") and (other := _room(name)) != own:
                if ANN_INDEX_RANKS[other] >= ANN_INDEX_RANKS[own]:
                    upward.append(f"ann_index/{rel} -> {name}")
    assert upward == []


def test_ann_index_has_few_loose_modules() -> None:
    loose = sorted(p.name for p in (REPO / "ann_index").glob("*.py"))
    assert len(loose) <= MAX_LOOSE_ANN_INDEX_MODULES, loose


def test_the_gateway_reaches_the_index_only_over_http() -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(n for n in _imported_modules(path) if n.split(".")[0] == "ann_index")
        for path in sorted((REPO / "services" / "gateway").rglob("*.py"))
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_services_do_not_import_the_command_line() -> None:
    # The CLI is the outermost layer: a service room that needs something of it takes it from services/common.
    offenders = {
        str(path.relative_to(REPO)): sorted(n for n in _imported_modules(path) if n.startswith("services.cli"))
        for room in ("detector", "embedder", "index", "gateway", "common")
        for path in sorted((REPO / "services" / room).rglob("*.py"))
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_docs_are_references_of_bounded_length() -> None:
    # A reference a reader can hold: no doc over 400 lines, today's numbers in at most 300 (history: CHANGELOG.md).
    lengths = {path.name: len(path.read_text().splitlines()) for path in sorted((REPO / "docs").glob("*.md"))}
    assert {name: n for name, n in lengths.items() if n > 400} == {}
    assert lengths["benchmarks.md"] <= 300
    assert lengths["architecture.md"] > 0 and "CONTRACTS.md" not in lengths
