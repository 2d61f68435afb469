"""SharedState across real processes: torn-free reads, killed and stopped writers, wake-ups,
Ctrl-C, lifetime, legacy segments and corrupt bytes."""
from __future__ import annotations

import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sharedstate as ss
from _procctl import until
from conftest import LINUX

HERE = Path(__file__).resolve().parent
CHILD = str(HERE / "state_child.py")
pytestmark = pytest.mark.skipif(not LINUX, reason="POSIX signals and /dev/shm (Windows: tests/test_windows.py)")


def spawn(*args, **kw):
    return subprocess.Popen([sys.executable, CHILD, *map(str, args)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def expect_line(proc, want, timeout=20.0):
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if sel.select(timeout=0.1):
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith(want):
                return line.strip()
    proc.kill()
    raise AssertionError(f"child never said {want!r}; stderr: {proc.stderr.read()}")


def consistent(s):
    return s.x == s.y and s.is_open == bool(s.x & 1) and s.is_running == (not s.x & 1) and s.is_pressing == (s.x % 3 == 0)


def test_no_torn_snapshots_under_a_python_writer(unique_name):
    with ss.SharedState.create(unique_name, ss.CONTROLLER) as st:
        st.write(x=0, y=0, is_open=False, is_running=True, is_pressing=True)
        w = spawn("writer", unique_name, 2.0)
        expect_line(w, "ready")
        reads = torn = 0
        versions = set()
        while w.poll() is None:
            for _ in range(1000):
                s = st.read()
                if not consistent(s):
                    torn += 1
            reads += 1000
            versions.add(st.version)
        writes = int(w.stdout.read().split()[-1])
        assert w.returncode == 0
        assert torn == 0, f"{torn} torn snapshots in {reads} reads"
        assert reads > 10_000 and writes > 10_000 and len(versions) > 10
        assert st.version == writes + 1  # version counts committed writes: the child's and our first
        assert consistent(st.read()) and st.x == writes


def test_no_torn_snapshots_under_a_cpp_writer(unique_name):
    from sharedstate._demo import simulator_path

    sim = subprocess.Popen([str(simulator_path()), unique_name, "1.5", "0"], stdout=subprocess.PIPE, text=True)
    try:
        expect_line(sim, "ready")
        with ss.SharedState.open(unique_name) as st:
            reads = torn = 0
            last_frame = 0
            while sim.poll() is None:
                for _ in range(1000):
                    s = st.read()
                    if s.frame and not (s.x == s.y == s.frame and s.is_pressing == bool(s.frame & 1)
                                        and s.is_open != s.is_pressing and s.sent_ns == 3 * s.frame):
                        torn += 1
                    if s.frame < last_frame:
                        torn += 1  # snapshots go back in time: impossible with one writer
                    last_frame = s.frame
                reads += 1000
            assert sim.wait() == 0
            assert torn == 0 and reads > 10_000 and last_frame > 1000
    finally:
        sim.kill()
        sim.wait()


def test_killed_writers_leave_last_committed_value_and_lock_is_taken_over(unique_name):
    from state_child import BIG

    st = ss.SharedState.create(unique_name, BIG)
    rng = random.Random(1)
    try:
        for rnd in range(12):
            v0 = st.version
            w = spawn("bigwriter", unique_name)
            expect_line(w, "ready")
            until(lambda: st.version >= v0 + 3, 30, "the writer writing")  # not still starting
            time.sleep(rng.uniform(0.005, 0.05))
            w.kill()
            w.wait()
            for _ in range(200):  # reads return at once and are never a mix of two writes
                s = st.read()
                assert s.tag.to_bytes(4, "little") == bytes([s.tag & 255]) * 4
                assert bool((s.fill == s.fill[0]).all()) and s.fill[0] == s.tag
            mark = bytes([200 + rnd % 50]) * BIG.size
            t0 = time.monotonic()
            st.write(mark)  # takes the dead writer's lock over (or finds it free)
            assert time.monotonic() - t0 < st.lock_timeout
            assert st.read().fill[0] == int.from_bytes(mark[:4], "little")
            assert st.info()["lock_owner_pid"] is None
        assert st.info()["recoveries"] >= 1, "no kill landed inside a write in 12 rounds"
    finally:
        st.close()


def test_stopped_writer_blocks_writers_with_a_clear_timeout_never_readers(unique_name):
    from state_child import BIG

    st = ss.SharedState.create(unique_name, BIG)
    st.lock_timeout = 0.2
    w = spawn("bigwriter", unique_name)
    expect_line(w, "ready")
    caught = False
    try:
        for _ in range(40):
            time.sleep(random.uniform(0.001, 0.01))
            w.send_signal(signal.SIGSTOP)
            time.sleep(0.01)
            t0 = time.monotonic()
            for _ in range(100):
                s = st.read()
                assert bool((s.fill == s.fill[0]).all())
            assert time.monotonic() - t0 < 2.0  # readers do not wait for the stopped writer
            if st.info()["lock_owner_pid"] == w.pid:
                with pytest.raises(TimeoutError, match=f"pid {w.pid}"):
                    st.write(tag=1)
                caught = True
                break
            w.send_signal(signal.SIGCONT)
        assert caught, "never stopped the writer inside a write in 40 tries"
        w.kill()  # dies while stopped, holding the lock
        w.wait()
        st.write(tag=5)
        assert st.tag == 5
    finally:
        w.kill()
        w.wait()
        st.close()


def test_wait_and_wake_across_processes(unique_name):
    with ss.SharedState.create(unique_name, ss.CONTROLLER) as st:
        c = spawn("waiter", unique_name, 0, 10)
        expect_line(c, "waiting")
        time.sleep(0.1)
        st.write(x=31)
        line = expect_line(c, "woke")
        assert line.split()[1:] == ["1", "31"]
        assert c.wait() == 0
        c = spawn("waiter", unique_name, st.version, 0.2)
        line = expect_line(c, "timeout")
        assert unique_name in line
        c.wait()


def test_ctrl_c_interrupts_a_blocking_wait(unique_name):
    with ss.SharedState.create(unique_name, ss.CONTROLLER):
        c = spawn("wait_forever", unique_name)
        expect_line(c, "waiting")
        time.sleep(0.2)  # well into the parked phase
        t0 = time.monotonic()
        c.send_signal(signal.SIGINT)
        _, err = c.communicate(timeout=10)
        assert time.monotonic() - t0 < 5
        assert c.returncode != 0 and "KeyboardInterrupt" in err


def test_killed_creator_segment_is_reclaimed_by_open(unique_name):
    c = spawn("creator", unique_name)
    expect_line(c, "ready")
    c.kill()
    c.wait()
    assert os.path.exists(f"/dev/shm/{unique_name}")
    with pytest.raises(FileNotFoundError, match="left behind"):
        ss.SharedState.open(unique_name)
    assert not os.path.exists(f"/dev/shm/{unique_name}")


def test_killed_creator_segment_is_replaced_by_create(unique_name):
    c = spawn("creator", unique_name)
    expect_line(c, "ready")
    c.kill()
    c.wait()
    with ss.SharedState.create(unique_name, ss.CONTROLLER) as st:
        assert st.x == 0 and st.version == 0  # a fresh segment, not the dead one's


def test_cleanup_command_removes_only_stale_segments(unique_name):
    c = spawn("creator", unique_name + "-dead")
    expect_line(c, "ready")
    c.kill()
    c.wait()
    with ss.SharedState.create(unique_name + "-live", ss.CONTROLLER):
        out = subprocess.run([sys.executable, "-m", "sharedstate", "cleanup"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert f"removed {unique_name}-dead" in out.stdout
        assert not os.path.exists(f"/dev/shm/{unique_name}-dead")
        assert os.path.exists(f"/dev/shm/{unique_name}-live")


def test_segment_lives_while_any_holder_lives(unique_name):
    c = spawn("creator", unique_name, "exit_without_close")
    expect_line(c, "ready")
    st = ss.SharedState.open(unique_name)
    c.stdin.close()
    assert c.wait(timeout=10) == 0  # the creator exited without closing
    assert st.x == 77
    st.write(x=78)
    assert ss.SharedState.open(unique_name).x == 78
    st.close()
    assert not os.path.exists(f"/dev/shm/{unique_name}")


C_WRITER = r"""
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
struct Controller { int32_t x; int32_t y; bool is_open; bool is_running; bool is_pressing; };
int main(int argc, char** argv) {
    char path[256]; snprintf(path, sizeof path, "/%s", argv[1]);
    int fd = shm_open(path, O_CREAT | O_RDWR, 0600);
    if (fd < 0 || ftruncate(fd, sizeof(struct Controller)) != 0) return 1;
    struct Controller* c = mmap(0, sizeof *c, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    c->x = 200; c->y = 300; c->is_open = false; c->is_running = true; c->is_pressing = false;
    return 0;
}
"""


@pytest.fixture(scope="session")
def c_writer(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler to build the legacy writer")
    d = tmp_path_factory.mktemp("legacy")
    (d / "w.c").write_text(C_WRITER)
    subprocess.run([cc, "-O1", "-o", str(d / "w"), str(d / "w.c")], check=True)
    return str(d / "w")


def test_raw_attach_reads_a_segment_made_by_a_c_program(unique_name, c_writer):
    subprocess.run([c_writer, unique_name], check=True)
    try:
        st = ss.SharedState.attach_raw(unique_name, ss.CONTROLLER)
        assert st.read() == (200, 300, False, True, False)
        assert st.view()["y"][0] == 300
        st.close()
        assert os.path.exists(f"/dev/shm/{unique_name}")  # raw: never unlinked unless asked
        with pytest.raises(ss.CorruptSegmentError, match="truncated"):
            ss.SharedState.open(unique_name)  # 12 bytes, no header: a clear error, not a crash
    finally:
        ss._core.state_unlink(unique_name)


# ---------------------------------------------------------------- corrupt segments
def _valid_bytes(name):
    with ss.SharedState.create(name, ss.CONTROLLER, persistent=True) as st:
        st.write(x=1)
    data = Path(f"/dev/shm/{name}").read_bytes()
    os.unlink(f"/dev/shm/{name}")
    return bytearray(data)


def _plant(name, data):
    fd = os.open(f"/dev/shm/{name}", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    os.write(fd, bytes(data))
    os.close(fd)


def _mutate(data, off, fmt, value):
    struct.pack_into(fmt, data, off, value)
    return data


@pytest.mark.parametrize("case, error, match", [
    ("empty", ss.CorruptSegmentError, "truncated"),
    ("garbage", ss.CorruptSegmentError, "bad magic"),
    ("zeros", ss.CorruptSegmentError, "not initialized"),
    ("queue_magic", ss.WrongKindError, "Queue"),
    ("version", ss.CorruptSegmentError, "format version"),
    ("checksum", ss.CorruptSegmentError, "checksum"),
    ("payload_huge", ss.CorruptSegmentError, "payload size"),
    ("segment_size", ss.CorruptSegmentError, "segment size"),
    ("field_count", ss.CorruptSegmentError, "field count|header size"),
    ("truncated_payload", ss.CorruptSegmentError, "truncated"),
])
def test_corrupt_segments_raise_clear_errors_and_are_left_alone(unique_name, case, error, match):
    data = _valid_bytes(unique_name)
    if case == "empty":
        data = b""
    elif case == "garbage":
        data = bytes(random.Random(3).getrandbits(8) for _ in range(600))
    elif case == "zeros":
        data = bytes(600)
    elif case == "queue_magic":
        data[0:8] = b"SHQUEUE1"
    elif case == "version":
        _mutate(data, 8, "<H", 9)
    elif case == "checksum":
        _mutate(data, 48, "<I", 12345)
    elif case == "payload_huge":
        _mutate(data, 24, "<I", 2**31)
    elif case == "segment_size":
        _mutate(data, 16, "<Q", 2**40)
    elif case == "field_count":
        _mutate(data, 36, "<I", 10**6)
    elif case == "truncated_payload":
        data = data[:300]
    _plant(unique_name, data)
    try:
        with pytest.raises(error, match=match):
            ss.SharedState.open(unique_name)
        assert os.path.exists(f"/dev/shm/{unique_name}")  # not ours to remove
        assert not ss._core.state_remove_if_stale(unique_name) or case in ("checksum", "version", "payload_huge",
                                                                            "segment_size", "field_count",
                                                                            "truncated_payload")
    finally:
        if os.path.exists(f"/dev/shm/{unique_name}"):
            os.unlink(f"/dev/shm/{unique_name}")
