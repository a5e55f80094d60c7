"""A user's mistake on the command line is one `imgsearch CMD: error: ...` line on stderr and exit 2 (as for
a usage error), never a traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from imgcore.fmnist import DEFAULT_ROOT
from tests.helpers.cli import imgsearch_cmd
from tests.helpers.paths import REPO

pytestmark = pytest.mark.stack

# Fashion-MNIST is a system package (dataset-fashion-mnist): a machine without it is simulated by giving
# the loader a root folder that does not exist, then running the real CLI entry point.
WITHOUT_FMNIST = (
    "import sys; from pathlib import Path; import imgcore.fmnist as f; "
    "f.load_fmnist.__defaults__ = (Path(sys.argv[1]),); "
    "from services.cli import main; sys.exit(main(sys.argv[2:]))"
)


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("imgsearch catalog fashion-mnist: error: ")]
    assert len(errors) == 1, done.stderr
    return errors[0]


def test_catalog_without_the_data_set_says_how_to_install_it(tmp_path: Path) -> None:
    cmd = imgsearch_cmd("catalog", "fashion-mnist", "--out", str(tmp_path / "shop"))
    done = _run([cmd[0], "-c", WITHOUT_FMNIST, str(tmp_path / "no-fmnist"), *cmd[3:]])
    line = _one_error_line(done)
    assert "Fashion-MNIST not found" in line and "apt-get install dataset-fashion-mnist" in line
    assert not (tmp_path / "shop").exists()


@pytest.mark.skipif(not DEFAULT_ROOT.is_dir(), reason="Fashion-MNIST is not installed")
def test_catalog_into_a_path_under_a_file_names_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    done = _run(imgsearch_cmd("catalog", "fashion-mnist", "--out", str(blocker / "shop"), "--limit", "3"))
    line = _one_error_line(done)
    assert str(blocker) in line


def test_a_debug_run_also_logs_the_traceback(tmp_path: Path) -> None:
    cmd = imgsearch_cmd("--log-level", "DEBUG", "catalog", "fashion-mnist", "--out", str(tmp_path / "shop"))
    done = _run([cmd[0], "-c", WITHOUT_FMNIST, str(tmp_path / "no-fmnist"), *cmd[3:]])
    assert done.returncode == 2 and "Traceback" in done.stderr and "FileNotFoundError" in done.stderr


def test_usage_errors_are_argparse_s() -> None:
    done = _run(imgsearch_cmd("catalog", "fashion-mnist"))
    assert done.returncode == 2 and "the following arguments are required: --out" in done.stderr
