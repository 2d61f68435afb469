"""Every example in examples/ runs: the C++ halves are built once per session with cmake
(add_subdirectory of this checkout), each pair runs as two real processes."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

import sharedstate as ss

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
NATIVE = shutil.which("cmake") is not None and sys.platform != "win32"
needs_cpp = pytest.mark.skipif(not NATIVE, reason="needs cmake and a native C++ compiler")


class Builder:
    """Configures examples/ once; builds each target at most once."""

    def __init__(self, build: Path) -> None:
        self.build = build
        self.done: Dict[str, Path] = {}
        self.configured = False

    def __call__(self, target: str) -> Path:
        if target in self.done:
            return self.done[target]
        if not self.configured:
            self._run("cmake", "-S", EXAMPLES, "-B", self.build, "-DCMAKE_BUILD_TYPE=Release")
            self.configured = True
        self._run("cmake", "--build", self.build, "--target", target, "-j2")
        exe = self.build / target
        assert exe.is_file(), f"{exe} was not built"
        self.done[target] = exe
        return exe

    @staticmethod
    def _run(*cmd: object) -> None:
        r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"{' '.join(map(str, cmd))}:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"


@pytest.fixture(scope="session")
def build(tmp_path_factory) -> Builder:
    return Builder(tmp_path_factory.mktemp("examples-build"))


def start(cmd: List[object]) -> subprocess.Popen:
    """Start one side and wait for its 'ready' line."""
    p = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("ready"):
        p.kill()
        out, err = p.communicate()
        pytest.fail(f"{cmd[0]} did not start: {line!r} {out} {err}")
    return p


def python(script: str, *args: object, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXAMPLES / script), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=EXAMPLES)


def finish(p: subprocess.Popen, timeout: float = 30) -> str:
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        pytest.fail(f"did not finish: {out} {err}")
    assert p.returncode == 0, f"exit {p.returncode}: {out} {err}"
    return out


@needs_cpp
def test_cpp_game_writer_python_reader(build, unique_name):
    game = start([build("game_writer"), unique_name, 5, 100])  # long enough for a slow reader start-up (3.13t under load)
    try:
        r = python("read_game.py", unique_name)
    finally:
        out = finish(game)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[-1].startswith("read_game: ") and int(lines[-1].split()[1]) >= 10
    assert "running=False" in lines[-2], "the reader stops when the game says it is done"
    for line in lines[:-2]:
        x = int(line.split("x=")[1].split()[0])
        assert 100 <= x <= 700, line  # the game's x = 400 + 300 cos t
    assert out.startswith("game_writer: ")


@needs_cpp
def test_python_writer_cpp_reader(build, unique_name):
    exe = build("cpp_reader")
    writer = start([sys.executable, EXAMPLES / "py_writer.py", unique_name, "--updates", 300])
    try:
        r = subprocess.run([str(exe), unique_name], capture_output=True, text=True, timeout=60)
    finally:
        out = finish(writer)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "last x=300 y=-300, 0 inconsistent" in r.stdout
    assert "py_writer: 300 updates" in out


@needs_cpp
@pytest.mark.skipif(not hasattr(ss, "Queue"), reason="API not yet available: sharedstate.Queue")
def test_input_events_through_the_queue(build, unique_name):
    game = start([build("game_input"), unique_name])
    try:
        r = python("send_input.py", unique_name, "--events", 1000)
    finally:
        out = finish(game)
    assert r.returncode == 0, r.stderr
    assert "1001 events, 250 keys down, mouse moved (500, -1000), 0 out of order" in out


def _pipe_api() -> bool:
    header = ROOT / "cpp" / "include" / "sharedstate" / "pipe.hpp"
    return hasattr(ss, "PipeServer") and hasattr(ss, "Pipe") and "class PipeServer" in header.read_text()


@needs_cpp
@pytest.mark.skipif(not _pipe_api(), reason="API not yet available: sharedstate.Pipe / PipeServer")
def test_pipe_request_response(build, unique_name):
    server = start([build("pipe_server"), unique_name])
    try:
        r = python("pipe_client.py", unique_name)
    finally:
        out = finish(server)
    assert r.returncode == 0, r.stderr
    assert "pipe_client: 100 requests answered" in r.stdout
    assert "pipe_server: 101 requests" in out


@needs_cpp
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the legacy writer's POSIX branch")
def test_attach_to_a_legacy_headerless_mapping(build, unique_name):
    legacy = start([build("legacy_game"), unique_name, 8])  # long enough for a slow interpreter start-up (3.13t under load)
    try:
        r = python("attach_legacy.py", unique_name, "--reads", 20000)
    finally:
        out = finish(legacy)
    assert r.returncode == 0, r.stderr
    assert "attach_legacy: 20000 reads" in r.stdout and "best effort" in r.stdout
    assert out.startswith("legacy_game: ")


def test_attach_to_multiprocessing_shared_memory(unique_name):
    """The other legacy source: a block made by the stdlib, read through attach_raw."""
    r = python("attach_legacy.py", "--self-test", unique_name)
    assert r.returncode == 0, r.stderr
    assert "self-test: x=200 y=300 running=True" in r.stdout


def test_typing_tour_runs():
    r = python("typing_tour.py")
    assert r.returncode == 0, r.stderr
    assert "state version" in r.stdout


@pytest.mark.skipif(not all(hasattr(ss, n) for n in ("Pipe", "PipeServer", "Semaphore")),
                    reason="API not yet available: sharedstate.Pipe / PipeServer / Semaphore")
def test_typing_tour_channels_runs():
    r = python("typing_tour_channels.py")
    assert r.returncode == 0, r.stderr
    assert "pipe: [b'PING', b'bye'] semaphore: True" in r.stdout


def _guide_block(lang: str) -> str:
    text = (ROOT / "docs" / "guide.md").read_text()
    quick = text[text.index("## Quick start"):text.index("## Layouts")]
    start = quick.index(f"```{lang}\n") + len(lang) + 4
    return quick[start:quick.index("```", start)]


def test_guide_snippets_python(unique_name, tmp_path):
    code = _guide_block("python").replace("ControllerMemory", unique_name)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "201 2"


@pytest.mark.skipif(shutil.which("c++") is None or sys.platform == "win32", reason="needs a native C++ compiler")
def test_guide_snippets_cpp(unique_name, tmp_path):
    src = tmp_path / "quick.cpp"
    src.write_text(_guide_block("cpp").replace("ControllerMemory", unique_name))
    exe = tmp_path / "quick"
    r = subprocess.run(["c++", "-std=c++17", "-Wall", "-Wextra", "-Werror", f"-I{ROOT / 'cpp' / 'include'}",
                        str(src), "-o", str(exe), "-pthread"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(not all(hasattr(ss, n) for n in ("Queue", "Mailslot", "MailslotWriter")),
                    reason="API not yet available: sharedstate.Queue / Mailslot")
def test_typing_tour_queue_runs():
    r = python("typing_tour_queue.py")
    assert r.returncode == 0, r.stderr
    assert "queue: [b'first', b'second', b'third'] mailslot: (b'hello', " in r.stdout


@needs_cpp
def test_cpp_frames_writer_python_reader(build, unique_name):
    game = start([build("frames_writer"), unique_name, 5, 60, "320x240"])  # as above
    try:
        r = python("frames_reader.py", unique_name)
    finally:
        out = finish(game)
    assert r.returncode == 0, r.stdout + r.stderr
    last = r.stdout.splitlines()[-1].split()
    assert last[0] == "frames_reader:" and int(last[1]) >= 10 and last[1] == last[6], r.stdout  # every frame whole
    assert "(240, 320, 4) uint8" in r.stdout
    assert out.startswith("frames_writer: ")
