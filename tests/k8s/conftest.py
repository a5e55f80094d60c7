"""Fixtures of the k8s tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tmp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where throw-away kustomizations (prod + the sharded-rebuild component) are written."""
    return tmp_path_factory.mktemp("k8s")
