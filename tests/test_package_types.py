"""The package's own Python sources are clean under mypy --strict (with _core.pyi)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "python"


def test_package_sources_pass_mypy_strict():
    pytest.importorskip("mypy")
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", "-p", "sharedstate"],
                       cwd=SRC, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Success" in r.stdout
