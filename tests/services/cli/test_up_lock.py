"""Two `imgsearch up` on one data folder: the second is refused at once (they would share log files)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from services.cli.up import lock_data_folder
from services.stack import free_port
from tests.helpers.cli import imgsearch_cmd

pytestmark = pytest.mark.stack  # runs the CLI


def test_a_second_up_on_a_folder_in_use_is_refused_and_names_the_holder(tmp_path: Path) -> None:
    held = lock_data_folder(tmp_path)
    assert held is not None
    try:
        cmd = imgsearch_cmd("up", "--data", str(tmp_path), "--port", str(free_port()))
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert run.returncode == 2, run.stderr
        assert "in use by another `imgsearch up`" in run.stderr and str(os.getpid()) in run.stderr
        assert not (tmp_path / "logs").exists()  # nothing was started
    finally:
        held.close()
    again = lock_data_folder(tmp_path)  # free once its holder lets go
    assert again is not None
    again.close()
