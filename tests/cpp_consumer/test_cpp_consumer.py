"""A C++ consumer project builds against sharedstate both ways a game would:
find_package(sharedstate) against a `cmake --install` prefix, and add_subdirectory."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.skipif(
    shutil.which("cmake") is None or sys.platform == "win32",
    reason="needs cmake and a native C++ compiler (the Windows build is checked by scripts/test-windows.sh)")


def run(*cmd: str, cwd: Path | None = None) -> str:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd, timeout=600)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.fixture(scope="session")
def install_prefix(tmp_path_factory) -> Path:
    """`cmake --install` of the header library (no Python, no tests) into a fresh prefix."""
    tmp = tmp_path_factory.mktemp("sharedstate-install")
    build, prefix = tmp / "build", tmp / "prefix"
    run("cmake", "-S", ROOT, "-B", build, "-DSHAREDSTATE_TESTS=OFF", "-DSHAREDSTATE_TOOLS=OFF",
        "-DSHAREDSTATE_PYTHON=OFF", f"-DCMAKE_INSTALL_PREFIX={prefix}")
    run("cmake", "--install", build)
    return prefix


def test_install_has_headers_and_cmake_package(install_prefix):
    assert (install_prefix / "include" / "sharedstate" / "sharedstate.hpp").is_file()
    assert (install_prefix / "include" / "sharedstate" / "detail" / "posix.hpp").is_file()
    cfg = list(install_prefix.glob("lib*/cmake/sharedstate/sharedstateConfig.cmake"))
    assert cfg, "sharedstateConfig.cmake not installed"
    assert (cfg[0].parent / "sharedstateConfigVersion.cmake").is_file()
    targets = (cfg[0].parent / "sharedstateTargets.cmake").read_text()
    assert "sharedstate::sharedstate" in targets
    assert str(ROOT) not in targets, "the installed package must not point back into the source tree"


@pytest.mark.parametrize("how", ["find_package", "add_subdirectory"])
def test_tiny_game_builds_and_runs(how, install_prefix, tmp_path, unique_name):
    build = tmp_path / how
    if how == "find_package":
        run("cmake", "-S", HERE, "-B", build, f"-DCMAKE_PREFIX_PATH={install_prefix}")
    else:
        run("cmake", "-S", HERE, "-B", build, f"-DSHAREDSTATE_SOURCE_DIR={ROOT}")
    run("cmake", "--build", build, "-j2")
    exe = build / "game"
    out = run(exe, unique_name)
    assert out.strip() == "ok x=201 y=300 version=2"
