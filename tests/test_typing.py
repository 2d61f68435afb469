"""Typing: the hand-kept _core.pyi matches the compiled module, and the public API is clean
under `mypy --strict` in an example that uses every public class."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sharedstate
from sharedstate import _core

ROOT = Path(__file__).resolve().parent.parent
PKG = Path(sharedstate.__file__).resolve().parent
STUB = PKG / "_core.pyi"
TOUR = ROOT / "examples" / "typing_tour.py"


def _stub_names(path: Path) -> set:
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    # Private aliases of the stub itself (_FieldTuple) are not module names.
    return {n for n in names if not re.match(r"_[A-Z]", n)}


def _module_names() -> set:
    return {n for n in dir(_core) if not (n.startswith("__") and n != "__version__")}


def test_stub_is_installed_with_py_typed():
    assert STUB.is_file(), f"{STUB} is not installed next to the compiled module"
    assert (PKG / "py.typed").is_file()


# Names stubbed ahead of a binding that is still being written (none now): they may be
# absent from the module. Every name the module HAS must always be stubbed.
LANDING: set = set()


def test_stub_names_match_the_compiled_module():
    stub, mod = _stub_names(STUB), _module_names()
    if "__version__" not in mod:
        stub.discard("__version__")
    assert not (mod - stub), f"names in _core without a stub in _core.pyi: {sorted(mod - stub)}"
    extra = stub - mod - LANDING
    assert not extra, f"stubs in _core.pyi for names _core does not have: {sorted(extra)}"


def test_stub_class_members_match():
    tree = ast.parse(STUB.read_text())
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or not hasattr(_core, node.name):
            continue
        cls = getattr(_core, node.name)
        if issubclass(cls, BaseException):
            continue
        stubbed = {n.name for n in node.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("__")}
        stubbed |= {n.target.id for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
        real = {n for n in dir(cls) if not n.startswith("_")}
        assert stubbed == real, f"_core.{node.name}: stub has {sorted(stubbed)}, module has {sorted(real)}"


def _tours() -> list:
    """The typed tours whose API has landed (channels and queue arrive separately)."""
    tours = [TOUR]
    if all(hasattr(sharedstate, n) for n in ("Pipe", "PipeServer", "Semaphore")):
        tours.append(ROOT / "examples" / "typing_tour_channels.py")
    if hasattr(sharedstate, "Queue"):
        tours.append(ROOT / "examples" / "typing_tour_queue.py")
    return tours


def test_public_api_is_clean_under_mypy_strict(tmp_path):
    pytest.importorskip("mypy", reason="mypy is not installed (add it to the test extra)")
    env = dict(os.environ)
    env.pop("MYPYPATH", None)
    tours = [str(t) for t in _tours()]
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
                        "--cache-dir", str(tmp_path / "cache"), *tours],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, f"mypy --strict {tours}:\n{r.stdout}{r.stderr}"


def test_mypy_catches_misuse(tmp_path):
    """The stubs are real types, not Any: misuse of the API is an error."""
    pytest.importorskip("mypy", reason="mypy is not installed (add it to the test extra)")
    bad = tmp_path / "bad.py"
    bad.write_text("import sharedstate as ss\n"
                   "st = ss.SharedState.open('x')\n"
                   "v: str = st.version\n"
                   "ss.Layout.opaque('12')\n")
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), str(bad)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 1
    assert "bad.py:3" in r.stdout and "bad.py:4" in r.stdout, r.stdout


GUIDE = ROOT / "docs" / "guide.md"


def _guide_python_blocks() -> list:
    """Every ```python block of docs/guide.md, in order (read from the guide itself, so the
    guide and this test cannot drift)."""
    return re.findall(r"^```python\n(.*?)^```", GUIDE.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_guide_has_the_buffer_examples():
    blocks = _guide_python_blocks()
    assert len(blocks) >= 3, "the guide's Python blocks were not found"
    assert any("st.read_into(np.zeros((), dtype=dt))" in b for b in blocks)


def test_every_guide_python_snippet_is_clean_under_mypy_strict(tmp_path):
    pytest.importorskip("mypy", reason="mypy is not installed (add it to the test extra)")
    files = []
    for i, code in enumerate(_guide_python_blocks()):
        f = tmp_path / f"guide_block_{i}.py"
        f.write_text(code, encoding="utf-8")
        files.append(str(f))
    env = dict(os.environ)
    env.pop("MYPYPATH", None)
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
                        "--cache-dir", str(tmp_path / "cache"), *files],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, f"mypy --strict on docs/guide.md's python blocks:\n{r.stdout}{r.stderr}"


def test_buffer_arguments_accept_what_callers_have(tmp_path):
    """numpy arrays (and scalars for messages), bytearray, memoryview and ctypes objects pass
    every buffer-taking call under mypy --strict (numpy arrays are not typing Buffers on 3.11)."""
    pytest.importorskip("mypy", reason="mypy is not installed (add it to the test extra)")
    code = '''
from __future__ import annotations
import ctypes
import numpy as np
import sharedstate as ss

class C(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int32)]

def calls(st: ss.SharedState, q: ss.Queue, p: ss.Pipe, m: ss.Mailslot, w: ss.MailslotWriter) -> None:
    dt = np.dtype([("x", "<i4")])
    for dst in (np.zeros((), dtype=dt), np.zeros(4, dtype=np.uint8), bytearray(4), memoryview(bytearray(4)), C()):
        st.read_into(dst)
        q.get_into(dst)
        p.recv_into(dst)
        m.recv_into(dst)
    for src in (np.zeros(4, dtype=np.uint8), np.float64(1.0), b"abc", bytearray(3), memoryview(b"abc"), C()):
        q.put(src)
        p.send(src)
        w.send(src)
'''
    f = tmp_path / "buffers.py"
    f.write_text(code)
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
                        "--cache-dir", str(tmp_path / "cache"), str(f)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    bad = tmp_path / "bad_buffers.py"
    bad.write_text("import sharedstate as ss\n"
                   "def f(st: ss.SharedState) -> None:\n"
                   "    st.read_into('not a buffer')\n")
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), str(bad)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 1 and "bad_buffers.py:3" in r.stdout, r.stdout
