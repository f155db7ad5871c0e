"""The project's pytest configuration: a mistyped marker fails the run instead of running in the
default suite (``--strict-markers`` in pyproject's addopts)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pytest_with_root_config(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    test = tmp_path / "test_marked.py"
    test.write_text(body)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            str(ROOT / "pyproject.toml"),
            "--rootdir",
            str(tmp_path),
            str(test),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )


def test_a_mistyped_marker_fails_collection(tmp_path):
    proc = _pytest_with_root_config(tmp_path, "import pytest\n\n@pytest.mark.slwo\ndef test_x():\n    assert True\n")
    assert proc.returncode != 0
    assert "'slwo' not found in `markers`" in proc.stdout + proc.stderr


def test_a_registered_marker_is_deselected_by_the_default_run(tmp_path):
    proc = _pytest_with_root_config(tmp_path, "import pytest\n\n@pytest.mark.slow\ndef test_x():\n    assert False\n")
    assert proc.returncode == 5, proc.stdout  # 5: no tests collected (the one test is deselected)
    assert "1 deselected" in proc.stdout


SKIPPED_AT_COLLECTION = """import pytest

pytestmark = [
    pytest.mark.{mark},
    pytest.mark.usefixtures("torch_one_thread"),
]
pytest.importorskip("no_such_module_anywhere")


def test_x():
    assert True
"""


def _no_skips_run(tmp_path: Path, mark: str) -> subprocess.CompletedProcess[str]:
    """``pytest -m libraries`` with ODIN_OOD_NO_SKIPS=1 (as .ci/run) over one module, marked ``mark``
    over several lines (as the formatter writes it), that skips itself at collection."""
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "test_marked.py").write_text(SKIPPED_AT_COLLECTION.format(mark=mark))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            str(ROOT / "pyproject.toml"),
            "--rootdir",
            str(tmp_path),
            "-m",
            "libraries",
            "-rs",
            str(tmp_path / "test_marked.py"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "ODIN_OOD_NO_SKIPS": "1"},
    )


def test_a_module_of_the_run_skipped_at_collection_fails_a_no_skips_run(tmp_path):
    proc = _no_skips_run(tmp_path, "libraries")
    assert proc.returncode == 1 and "which this run forbids" in proc.stdout, proc.stdout[-2000:]


def test_a_module_of_another_run_skipped_at_collection_does_not(tmp_path):
    proc = _no_skips_run(tmp_path, "ray")
    assert proc.returncode != 1 and "which this run forbids" not in proc.stdout, proc.stdout[-2000:]
