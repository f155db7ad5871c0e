"""The project's pytest configuration: a mistyped marker fails the run instead of running in the
default suite (``--strict-markers`` in pyproject's addopts)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pytest_with_root_config(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    test = tmp_path / "test_marked.py"
    test.write_text(body)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(ROOT / "pyproject.toml"),
         "--rootdir", str(tmp_path), str(test)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )


def test_a_mistyped_marker_fails_collection(tmp_path):
    proc = _pytest_with_root_config(tmp_path, "import pytest\n\n@pytest.mark.slwo\ndef test_x():\n    assert True\n")
    assert proc.returncode != 0
    assert "'slwo' not found in `markers`" in proc.stdout + proc.stderr


def test_a_registered_marker_is_deselected_by_the_default_run(tmp_path):
    proc = _pytest_with_root_config(tmp_path, "import pytest\n\n@pytest.mark.slow\ndef test_x():\n    assert False\n")
    assert proc.returncode == 5, proc.stdout  # 5: no tests collected (the one test is deselected)
    assert "1 deselected" in proc.stdout
