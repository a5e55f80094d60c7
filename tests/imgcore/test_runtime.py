"""onnxruntime at start: loaded only by processes that run a model, and silent on a read-only $HOME (the pods')."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.paths import REPO


def _python(code: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env.update(HOME=str(home), PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)


def test_the_cli_and_the_gateway_app_do_not_load_onnxruntime(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from services.cli import build_parser\n"
        "from services.common.server import build_app\n"
        "from services.common.settings import SETTINGS_CLASSES\n"
        "build_parser()\n"
        "build_app('gateway', SETTINGS_CLASSES['gateway']())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'onnxruntime'))\n"
    )
    out = _python(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_session_writes_nothing_under_home_and_warns_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    code = (
        "from pathlib import Path\n"
        "from imgcore.runtime import OrtSession\n"
        "s = OrtSession(Path('models/nanodet-m/model.onnx'))\n"
        "print(s.input_names)\n"
    )
    out = _python(code, home)
    assert out.returncode == 0, out.stderr
    assert "input" in out.stdout
    assert out.stderr == "", out.stderr  # onnxruntime's telemetry would warn "Failed to persist telemetry device ID"
    assert list(home.rglob("*")) == []  # nor write a device id under $HOME/.cache


def test_a_cancelled_run_raises_and_an_uncancelled_one_answers() -> None:
    from imgcore.runtime import CancelledRun, OrtSession, RunCancel

    session = OrtSession(REPO / "models" / "movenet-multipose" / "model.onnx")
    feeds = {session.input_names[0]: np.zeros((1, 64, 64, 3), dtype=np.int32)}
    assert session.run(feeds, RunCancel())[0].shape[-1] == 56  # 6 people x (17 x 3 + box + score)
    stop = RunCancel()
    stop.cancel()
    with pytest.raises(CancelledRun):
        session.run(feeds, stop)
    assert session.run(feeds)[0].shape[-1] == 56  # the session itself stays usable
