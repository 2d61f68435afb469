"""pytest-benchmark micro benchmarks: `pytest bench/ --benchmark-only` (kept out of the default
test run: pyproject's testpaths is tests/).

Files named test_*.py and bench_*.py here are collected. Every object is named "sst-bench-..."
and removed after its test.
"""
import os
import uuid

import pytest


def pytest_collect_file(file_path, parent):
    # bench_*.py files are benchmarks too (pytest's default pattern only takes test_*.py).
    # A file named on the command line is collected by pytest itself already.
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


@pytest.fixture
def bench_name(request):
    """A unique object name for one benchmark."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40]
    return f"sst-bench-{base}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
