"""Windows-only checks, run under Wine by scripts/test-windows.sh (and on real Windows as is).

- a mapping created by a plain C++ program (tests/cpp/legacy_writer.cpp: CreateFileMappingA with
  a bare name, the 12-byte controller struct, no header) is read and written by attach_raw;
- `Local\\` names (and `Global\\`) work for SharedState, across processes;
- a segment lives while any process holds a handle and goes away with the last one (normal exit,
  killed creator), as Windows' object manager does it;
- the C++ simulator shipped in the package (bin/sharedstate-sim.exe) and Python share a segment
  with no torn snapshot, and wait() wakes across processes.

The helper executables are found through SHAREDSTATE_TEST_BIN (the build's tests/cpp directory,
set by the script); the simulator next to the package (sharedstate/bin/).
"""
from __future__ import annotations

import os
import queue
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import sharedstate as ss
from conftest import WINDOWS, WINE

pytestmark = pytest.mark.skipif(not WINDOWS, reason="Windows named kernel objects (Linux: test_state_xproc.py)")

TIMEOUT = 60.0  # generous: Wine process start-up on a loaded 2-core machine


class Proc:
    """A child process with line-by-line stdout read by a thread (select() does not work on
    Windows pipes), so that every wait has a timeout."""

    def __init__(self, args, **kw):
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, **kw)
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.err: list = []
        threading.Thread(target=self._pump, args=(self.p.stdout, self.lines.put), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.p.stderr, self.err.append), daemon=True).start()

    @staticmethod
    def _pump(stream, sink):
        for line in stream:
            sink(line.rstrip("\r\n"))
        sink(None) if sink.__name__ == "put" else None

    def expect(self, prefix: str, timeout: float = TIMEOUT) -> str:
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                line = None
                left = -1
            if line is None:
                self.kill()
                raise AssertionError(f"child never printed {prefix!r} (rc={self.p.poll()}); "
                                     f"stderr: {' | '.join(self.err)}")
            if line.startswith(prefix):
                return line

    def send(self, line: str) -> None:
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def finish(self, timeout: float = TIMEOUT) -> int:
        try:
            self.p.stdin.close()
        except OSError:
            pass
        return self.p.wait(timeout=timeout)

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(timeout=TIMEOUT)


def test_bin(name: str) -> str:
    d = os.environ.get("SHAREDSTATE_TEST_BIN")
    if not d:
        pytest.skip("SHAREDSTATE_TEST_BIN (the build's tests/cpp directory) is not set")
    exe = Path(d) / f"{name}.exe"
    assert exe.is_file(), f"{exe} was not built (SHAREDSTATE_TEST_BIN={d})"
    return str(exe)


test_bin.__test__ = False  # a helper, not a test


def python_child(code: str, *args: str) -> Proc:
    return Proc([sys.executable, "-c", textwrap.dedent(code), *args])


# ------------------------------------------------------------------ the legacy C++ writer


@pytest.mark.parametrize("prefix", ["", "Local\\"])
def test_legacy_createfilemapping_read_by_attach_raw(unique_name, prefix):
    name = prefix + unique_name          # e.g. a bare "ControllerMemory"-like name
    w = Proc([test_bin("legacy_writer"), name, "200", "300", "0", "1", "0"])
    try:
        w.expect("ready")
        st = ss.SharedState.attach_raw(name, ss.CONTROLLER)
        snap = st.read()
        assert snap == (200, 300, False, True, False)
        assert (snap.x, snap.y, snap.is_running) == (200, 300, True)
        assert st.view()["y"][0] == 300      # numpy view over the live mapping
        st.write(x=7, is_pressing=True)      # Python writes, the C++ program sees it
        w.send("dump")
        assert w.expect("state") == "state 7 300 0 1 1"
        st.y = -5
        w.send("dump")
        assert w.expect("state") == "state 7 -5 0 1 1"
        assert w.finish() == 0                # the creator exits without any cleanup
        # Our handle keeps the mapping (and its bytes) alive after the creator is gone.
        assert st.read() == (7, -5, False, True, True)
        st.close()
    finally:
        w.kill()
    # The last handle is closed: the name is gone (a raw attach never creates unless asked).
    with pytest.raises(FileNotFoundError):
        ss.SharedState.attach_raw(name, ss.CONTROLLER)


def test_local_prefix_and_bare_name_are_one_object(unique_name):
    # In a desktop session a bare name lives in the session's namespace, which is what
    # `Local\` names: the C++ program's "Local\X" and Python's "X" meet.
    w = Proc([test_bin("legacy_writer"), "Local\\" + unique_name, "1", "2", "1", "1", "0"])
    try:
        w.expect("ready")
        with ss.SharedState.attach_raw(unique_name, ss.CONTROLLER) as st:
            assert st.read() == (1, 2, True, True, False)
        assert w.finish() == 0
    finally:
        w.kill()


def test_attach_raw_to_a_sharedstate_name_that_does_not_exist(unique_name):
    with pytest.raises(FileNotFoundError, match=unique_name):
        ss.SharedState.attach_raw(unique_name, ss.CONTROLLER)
    with pytest.raises(FileNotFoundError, match=unique_name):
        ss.SharedState.open("Local\\" + unique_name)


# ------------------------------------------------------------------ names


def test_local_names_for_sharedstate_across_processes(unique_name):
    name = "Local\\" + unique_name
    with ss.SharedState.create(name, ss.CONTROLLER) as st:
        st.write(x=200, y=300, is_running=True)
        v = st.version
        with pytest.raises(FileExistsError):
            ss.SharedState.create(name, ss.CONTROLLER)
        c = python_child("""
            import sys, sharedstate as ss
            with ss.SharedState.open(sys.argv[1]) as st:
                print("read", *st.read(), st.version, flush=True)
                st.write(y=301)
        """, name)
        assert c.expect("read") == f"read 200 300 False True False {v}"
        assert c.finish() == 0, c.err
        assert st.read() == (200, 301, False, True, False) and st.version == v + 1
        # The same object under its bare name (session namespace).
        with ss.SharedState.open(unique_name) as same:
            assert same.version == st.version and same.y == 301


@pytest.mark.wine_deviation(reason="Wine creates Global\\ objects without SeCreateGlobalPrivilege; "
                                   "the PermissionError path of real Windows cannot be exercised")
def test_global_prefix(unique_name):
    name = "Global\\" + unique_name
    try:
        st = ss.SharedState.create(name, ss.CONTROLLER)
    except PermissionError as e:  # real Windows without SeCreateGlobalPrivilege
        assert not WINE, "Wine grants Global\\ to everyone"
        assert unique_name in str(e)
        return
    with st:
        st.write(x=9)
        c = python_child("""
            import sys, sharedstate as ss
            with ss.SharedState.open(sys.argv[1]) as st:
                print("x", st.x, flush=True)
        """, name)
        assert c.expect("x") == "x 9"
        assert c.finish() == 0, c.err


@pytest.mark.parametrize("bad", ["a\\b", "Local\\", "Local\\a\\b", "Global\\", "x/y", ""])
def test_bad_windows_names_raise_valueerror_before_any_os_call(bad):
    with pytest.raises(ValueError):
        ss.SharedState.create(bad, ss.CONTROLLER)


# ------------------------------------------------------------------ lifetime


CREATOR = """
    import os, sys, sharedstate as ss
    st = ss.SharedState.create(sys.argv[1], ss.CONTROLLER)
    st.write(x=77, y=-1)
    print("ready", flush=True)
    how = sys.argv[2]
    if how == "exit_now":
        os._exit(0)               # no close(): the OS closes the handle
    sys.stdin.read()              # hold it until the parent closes our stdin (or kills us)
    if how == "exit_without_close":
        os._exit(0)
    st.close()
"""


def test_segment_goes_away_when_its_only_holder_exits(unique_name):
    c = python_child(CREATOR, unique_name, "exit_now")
    c.expect("ready")
    assert c.finish() == 0, c.err
    with pytest.raises(FileNotFoundError):
        ss.SharedState.open(unique_name)
    # and the name is free again: a new, zeroed segment
    with ss.SharedState.create(unique_name, ss.CONTROLLER) as st:
        assert st.read() == (0, 0, False, False, False) and st.version == 0


@pytest.mark.parametrize("how", ["close", "exit_without_close", "killed"])
def test_segment_outlives_its_creator_while_held_then_goes_away(unique_name, how):
    c = python_child(CREATOR, unique_name, how)
    try:
        c.expect("ready")
        st = ss.SharedState.open(unique_name)
        assert (st.x, st.y) == (77, -1)
        if how == "killed":
            c.kill()                      # TerminateProcess
        else:
            assert c.finish() == 0, c.err
        # We still hold it: contents, name and writes all survive the creator.
        assert (st.x, st.y) == (77, -1)
        with ss.SharedState.open(unique_name) as again:
            again.write(x=78)
        assert st.x == 78 and st.version == 2
        st.close()
    finally:
        c.kill()
    with pytest.raises(FileNotFoundError):
        ss.SharedState.open(unique_name)


# ------------------------------------------------------------------ C++ simulator + Python


def sim_exe() -> str:
    exe = Path(ss.__file__).resolve().parent / "bin" / "sharedstate-sim.exe"
    assert exe.is_file(), f"{exe} is missing from the package"
    return str(exe)


def test_cpp_simulator_and_python_share_state_without_torn_reads(unique_name):
    # rate 0: the simulator writes as fast as it can, every field derived from the frame.
    sim = Proc([sim_exe(), unique_name, "2", "0"])
    try:
        sim.expect("ready")
        with ss.SharedState.open(unique_name) as st:   # layout from the C++-written header
            assert st.layout.names == ("x", "y", "is_open", "is_running", "is_pressing", "frame", "sent_ns")
            reads = changes = 0
            last = None
            while sim.p.poll() is None and reads < 2_000_000:
                s = st.read()
                reads += 1
                if s.frame == 0:
                    continue
                assert s.x == s.y == s.frame, s
                assert s.is_pressing == bool(s.frame & 1) and s.is_open == (not s.is_pressing), s
                assert s.sent_ns == 3 * s.frame, s
                if s.frame != last:
                    changes += 1
                    last = s.frame
            assert reads > 100 and changes > 10, (reads, changes)
        sim.expect("done")
        assert sim.finish() == 0, sim.err
    finally:
        sim.kill()


def test_wait_wakes_across_processes(unique_name):
    with ss.SharedState.create(unique_name, ss.CONTROLLER) as st:
        v = st.version
        c = python_child("""
            import sys, time, sharedstate as ss
            with ss.SharedState.open(sys.argv[1]) as st:
                print("opened", flush=True)
                time.sleep(0.3)
                st.write(x=5)
        """, unique_name)
        c.expect("opened")
        t0 = time.monotonic()
        assert st.wait(since=v, timeout=TIMEOUT) > v
        assert st.x == 5 and time.monotonic() - t0 < TIMEOUT
        assert c.finish() == 0, c.err
        with pytest.raises(TimeoutError):
            st.wait(since=st.version, timeout=0.05)
