"""Where the repository and the test data live, for tests at any depth."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
PHOTOS = DATA / "photos"
BAD = DATA / "bad"
