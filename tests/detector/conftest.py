"""The detector tests' shared fixture: NanoDet-m fp32, the reference the pose and people tests fuse with."""

from __future__ import annotations

import pytest

from detector import Detector
from tests.helpers.paths import REPO


@pytest.fixture(scope="session")
def detector() -> Detector:
    return Detector(REPO / "models" / "nanodet-m")
