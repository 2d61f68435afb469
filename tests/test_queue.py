"""Queue: order and no loss across processes, exact fit and wrap-around, full/empty blocking and
timeouts, producers SIGKILLed mid-put, corrupt and foreign segments, Ctrl-C, zero-copy views."""
from __future__ import annotations

import mmap
import os
import random
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import _procctl
import sharedstate as ss
from conftest import LINUX

HDR = struct.Struct("<III")  # producer, seq, payload length


def make_msg(producer: int, seq: int, size: int) -> bytes:
    body = bytes(((seq * 31 + i * 7 + producer) & 0xFF) for i in range(min(size, 16)))
    body = (body * (size // 16 + 1))[:size] if size else b""
    return HDR.pack(producer, seq, size) + body


def check_msg(m: bytes) -> tuple:
    producer, seq, size = HDR.unpack_from(m)
    assert len(m) == HDR.size + size, "length mismatch: torn message"
    assert m[HDR.size:] == make_msg(producer, seq, size)[HDR.size:], "payload mismatch: torn message"
    return producer, seq


def size_for(seq: int) -> int:
    return ((seq * 2654435761) >> 7) % 200 + (2000 if seq % 251 == 0 else 0)


# A producer child: puts N self-checking messages (or forever when N < 0).
PRODUCER = textwrap.dedent("""
    import struct, sys, time
    sys.path.insert(0, sys.argv[4])
    from test_queue import make_msg, size_for
    import sharedstate as ss
    q = ss.Queue.open(sys.argv[1])
    pid, n = int(sys.argv[2]), int(sys.argv[3])
    # Precompute a few bodies: the test is about the queue, not about building bytes.
    cache = {}
    seq = 0
    print("ready", flush=True)
    while n < 0 or seq < n:
        size = size_for(seq) if n >= 0 else 50 + (seq * 37) % 3000
        q.put(make_msg(pid, seq, size), timeout=60)
        seq += 1
""")

HERE = os.path.dirname(os.path.abspath(__file__))


_children: list = []


def spawn_producer(name: str, pid: int, n: int) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", PRODUCER, name, str(pid), str(n), HERE],
                         stdout=subprocess.PIPE, text=True)
    _children.append(p)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return p


@pytest.fixture(autouse=True)
def _kill_leftover_children():
    """A failing test must not leave producers holding its queue (the leak check would
    then blame the next test)."""
    yield
    while _children:
        p = _children.pop()
        if p.poll() is None:
            p.kill()
        p.wait()
        if p.stdout:
            p.stdout.close()


# ---------------------------------------------------------------------------------- basics
def test_put_get_len_empty(unique_name):
    with ss.Queue.create(unique_name, capacity=4096) as q:
        assert q.name == unique_name
        assert q.capacity == 4096 and q.max_message == 4096 - 16
        assert len(q) == 0 and q.empty()
        q.put(b"")
        q.put(b"hello")
        q.put(bytearray(b"x" * 1000))
        q.put(memoryview(b"abcdef")[1:4])
        assert len(q) == 4 and not q.empty()
        assert q.get() == b""
        assert q.get(timeout=0) == b"hello"
        buf = bytearray(10)
        with pytest.raises(ValueError):
            q.get_into(buf)  # too small: the message stays
        big = bytearray(2000)
        assert q.get_into(big) == 1000 and big[:1000] == b"x" * 1000
        assert q.get_into(buf, timeout=1) == 3 and buf[:3] == b"bcd"
        assert len(q) == 0 and q.empty()
        with pytest.raises(ValueError):
            q.put(b"y" * 5000)  # over max_message
        with pytest.raises(TypeError):
            q.put("text is not bytes")
        with pytest.raises(ValueError):
            q.get(timeout=-1)
        assert "Queue" in repr(q)
    assert q.closed
    with pytest.raises(ValueError):
        q.put(b"closed")
    assert "closed" in repr(q)


def test_open_second_handle_and_exist_ok(unique_name):
    q = ss.Queue.create(unique_name, capacity=1 << 12, max_message=100)
    with pytest.raises(FileExistsError):
        ss.Queue.create(unique_name)
    with ss.Queue.create(unique_name, exist_ok=True) as again, ss.Queue.open(unique_name) as other:
        assert other.max_message == 100 and again.capacity == 4096
        other.put(b"via other")
        assert q.get(timeout=1) == b"via other"
    q.close()
    with pytest.raises(FileNotFoundError):
        ss.Queue.open(unique_name)


def test_capacity_rounding_and_bad_arguments(unique_name):
    with ss.Queue.create(unique_name, capacity=1000) as q:
        assert q.capacity == 1024
    with pytest.raises(ValueError):
        ss.Queue.create(unique_name, capacity=0)
    with pytest.raises(ValueError):
        ss.Queue.create(unique_name, capacity=256, max_message=1000)
    for bad in ("", "a/b", "x" * 300):
        with pytest.raises(ValueError):
            ss.Queue.create(bad)


def test_exact_fit_and_wrap_around(unique_name):
    with ss.Queue.create(unique_name, capacity=256) as q:
        whole = bytes(range(240))  # 16-byte header + 240 = the whole ring
        q.put(whole)
        with pytest.raises(TimeoutError):
            q.put(b"", timeout=0)
        assert q.get() == whole
        # Many laps with sizes that never divide the ring: padding at every lap's end.
        sent = got = 0
        rnd = random.Random(1)
        for _ in range(3000):
            while True:
                try:
                    q.put(make_msg(1, sent, rnd.randrange(0, 90)), timeout=0)
                except TimeoutError:
                    break
                sent += 1
            for _ in range(rnd.randrange(1, 4)):
                try:
                    m = q.get(timeout=0)
                except TimeoutError:
                    break
                assert check_msg(m) == (1, got)
                got += 1
        while not q.empty():
            assert check_msg(q.get(timeout=0))[1] == got
            got += 1
        assert got == sent > 3000
        # The whole-ring message once more: it waits for the consumer to pass the padding.
        t = threading.Thread(target=lambda: q.put(whole, timeout=5))
        t.start()
        assert q.get(timeout=5) == whole
        t.join()


def test_get_view_is_zero_copy_and_consumes_at_exit(unique_name):
    with ss.Queue.create(unique_name, capacity=4096) as q:
        q.put(b"in place")
        q.put(b"second")
        with q.get_view(timeout=1) as mv:
            assert isinstance(mv, memoryview) and mv.readonly
            assert bytes(mv) == b"in place"
            assert len(q) == 2  # not consumed yet
            with pytest.raises(ValueError):
                q.get(timeout=0)  # one view at a time
        assert mv.released if hasattr(mv, "released") else True
        assert len(q) == 1
        with pytest.raises(RuntimeError):
            with q.get_view() as mv:
                raise RuntimeError("consumed anyway")
        assert q.empty()
        with pytest.raises(TimeoutError):
            with q.get_view(timeout=0.02):
                pass


def test_put_view_publishes_or_cancels(unique_name):
    with ss.Queue.create(unique_name, capacity=4096) as q:
        with q.put_view(5) as mv:
            mv[:] = b"hello"
        with pytest.raises(RuntimeError):
            with q.put_view(100) as mv:
                raise RuntimeError("cancelled")
        q.put(b"third")
        assert q.get(timeout=1) == b"hello"
        assert q.get(timeout=1) == b"third"
        assert len(q) == 0


# ---------------------------------------------------------------------------------- blocking
def test_timeouts(unique_name):
    with ss.Queue.create(unique_name, capacity=1024) as q:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="empty"):
            q.get(timeout=0.05)
        assert time.monotonic() - t0 >= 0.045
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            q.get(timeout=0)
        assert time.monotonic() - t0 < 0.5
        n = 0
        while True:
            try:
                q.put(b"z" * 40, timeout=0)
                n += 1
            except TimeoutError as e:
                assert "full" in str(e)
                break
        assert n == 1024 // 64
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            q.put(b"z", timeout=0.05)
        assert time.monotonic() - t0 >= 0.045


def test_full_queue_blocks_until_another_process_consumes(unique_name):
    with ss.Queue.create(unique_name, capacity=1024) as q:
        while True:
            try:
                q.put(b"f" * 100, timeout=0)
            except TimeoutError:
                break
        # the child gets only 0.2 s after our "go": the put below is blocked until then, and
        # nothing it times includes the child's start-up (seconds under Wine on a loaded machine)
        child = _procctl.python_child("""
            import sys, time
            q = sharedstate.Queue.open(sys.argv[1])
            print("opened", flush=True)
            sys.stdin.readline()
            time.sleep(0.2)
            for _ in range(3):
                q.get(timeout=5)
        """, unique_name, stdin=True)
        assert child.stdout.readline().strip() == "opened"
        t0 = time.monotonic()
        child.stdin.write("go\n")
        child.stdin.close()
        q.put(b"blocked until the child gets", timeout=30)
        assert time.monotonic() - t0 > 0.1
        assert child.wait(timeout=30) == 0


def test_blocked_get_releases_the_gil_and_is_woken(unique_name):
    with ss.Queue.create(unique_name, capacity=4096) as q:
        got = []
        t = threading.Thread(target=lambda: got.append(q.get(timeout=10)))
        t.start()
        ticks = 0
        t_end = time.monotonic() + 0.2
        while time.monotonic() < t_end:  # this thread runs while the other waits
            ticks += 1
        assert ticks > 1000
        other = ss.Queue.open(unique_name)
        other.put(b"wake")
        t.join(timeout=10)
        other.close()
        assert got == [b"wake"]


@pytest.mark.skipif(not LINUX, reason="SIGINT delivery to a child")
def test_ctrl_c_interrupts_a_blocked_get(unique_name):
    q = ss.Queue.create(unique_name, capacity=4096)
    code = ("import sys, sharedstate as ss\n"
            "q = ss.Queue.open(sys.argv[1])\n"
            "try:\n    print('waiting', flush=True)\n    q.get()\n"
            "except KeyboardInterrupt:\n    print('interrupted', flush=True)\n")
    child = subprocess.Popen([sys.executable, "-c", code, unique_name], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "waiting"
    time.sleep(0.2)
    t0 = time.monotonic()
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=10)
    assert "interrupted" in out
    assert time.monotonic() - t0 < 5  # the signal ended the get, at once (it has no timeout)
    q.close()


def test_one_consumer_process_at_a_time(unique_name):
    with ss.Queue.create(unique_name, capacity=4096) as q:
        q.put(b"a")
        assert q.get() == b"a"  # this process is now the consumer
        code = ("import sys, sharedstate as ss\n"
                "q = ss.Queue.open(sys.argv[1])\n"
                "try:\n    q.get(timeout=0)\nexcept ValueError as e:\n    print('refused:', e)\n")
        out = subprocess.run([sys.executable, "-c", code, unique_name], capture_output=True, text=True,
                             timeout=30).stdout
        assert "refused" in out and "consumer" in out
        assert q.info()["consumer_pid"] == os.getpid()


# ---------------------------------------------------------------------------------- processes
def test_two_processes_order_and_no_loss_mixed_sizes(unique_name):
    n = 150_000
    with ss.Queue.create(unique_name, capacity=1 << 16) as q:
        p = spawn_producer(unique_name, 7, n)
        get = q.get
        for seq in range(n):
            m = get(timeout=30)
            producer, s, _ = HDR.unpack_from(m)
            assert (producer, s) == (7, seq)
            assert len(m) == HDR.size + size_for(seq)
            if seq % 997 == 0:
                check_msg(m)
        assert p.wait(timeout=30) == 0
        assert q.empty()


def test_three_producers_keep_their_own_order(unique_name):
    n = 40_000
    with ss.Queue.create(unique_name, capacity=1 << 14) as q:
        procs = [spawn_producer(unique_name, k, n) for k in range(3)]
        nxt = [0, 0, 0]
        for _ in range(3 * n):
            m = q.get(timeout=30)
            producer, seq, _ = HDR.unpack_from(m)
            assert seq == nxt[producer]
            nxt[producer] += 1
        assert nxt == [n, n, n]
        for p in procs:
            assert p.wait(timeout=30) == 0


def test_producers_killed_mid_put_never_wedge_or_tear(unique_name):
    """SIGKILL on Linux, TerminateProcess on Windows, at random moments of a tight put loop."""
    rnd = random.Random(42)
    delivered = 0
    with ss.Queue.create(unique_name, capacity=1 << 15) as q:
        for round_ in range(6):
            procs = [spawn_producer(unique_name, 10 * round_ + k, -1) for k in range(2)]
            t_end = time.monotonic() + rnd.uniform(0.02, 0.15)
            while time.monotonic() < t_end:
                try:
                    check_msg(q.get(timeout=0.01))
                    delivered += 1
                except TimeoutError:
                    pass
            for p in procs:
                p.kill()
            for p in procs:
                p.wait(timeout=30)
                p.stdout.close()
            while True:  # whatever they left half-written is skipped, never delivered
                try:
                    check_msg(q.get(timeout=0.1))
                    delivered += 1
                except TimeoutError:
                    break
            assert q.empty() and len(q) == 0
            q.put(b"still works", timeout=1)
            assert q.get(timeout=1) == b"still works"
        assert delivered > 50


def test_producer_killed_between_reserve_and_publish_is_skipped(unique_name):
    with ss.Queue.create(unique_name, capacity=1 << 14) as q:
        q.put(b"before")
        code = ("import sys, time, sharedstate as ss\n"
                "q = ss.Queue.open(sys.argv[1])\n"
                "with q.put_view(1000) as mv:\n"
                "    mv[:500] = b'T' * 500; print('reserved', flush=True); time.sleep(60)\n")
        child = subprocess.Popen([sys.executable, "-c", code, unique_name], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "reserved"
        q.put(b"after")  # queued behind the half-written record
        assert q.get(timeout=1) == b"before"
        with pytest.raises(TimeoutError, match="still writing"):
            q.get(timeout=0.1)  # its producer is alive: we wait for it
        child.kill()
        child.wait(timeout=30)
        child.stdout.close()
        # A consumer that only polls (timeout=0, e.g. once a frame) gets past it too.
        t_end = time.monotonic() + 5
        while True:
            try:
                m = q.get(timeout=0)
                break
            except TimeoutError:
                assert time.monotonic() < t_end, "a dead producer's record wedged a polling consumer"
                time.sleep(0.002)
        assert m == b"after"  # the torn record is skipped
        assert q.info()["skipped"] == 1
        assert q.empty()


# ---------------------------------------------------------------------------------- corrupt
def _poke(name: str, offset: int, data: bytes) -> None:
    fd = os.open(f"/dev/shm/{name}", os.O_RDWR)
    try:
        with mmap.mmap(fd, 0) as m:
            m[offset:offset + len(data)] = data
    finally:
        os.close(fd)


@pytest.mark.skipif(not LINUX, reason="pokes /dev/shm")
@pytest.mark.parametrize("offset,data,what", [
    (0, b"GARBAGE!", "magic"),
    (8, struct.pack("<H", 9), "version"),
    (24, struct.pack("<Q", 3000), "capacity"),
    (16, struct.pack("<Q", 1 << 40), "segment size"),
    (32, struct.pack("<I", 1), "checksum"),
])
def test_corrupt_headers_are_refused(unique_name, offset, data, what):
    with ss.Queue.create(unique_name, capacity=4096):
        _poke(unique_name, offset, data)
        with pytest.raises(ss.CorruptSegmentError):
            ss.Queue.open(unique_name)


@pytest.mark.skipif(not LINUX, reason="pokes /dev/shm")
def test_corrupt_live_words_are_errors_not_crashes(unique_name):
    with ss.Queue.create(unique_name, capacity=4096) as q:
        q.put(b"abc")
        _poke(unique_name, 320, struct.pack("<I", 1 << 20))  # the first record's size
        with pytest.raises(ss.CorruptSegmentError):
            q.get(timeout=0.01)
        _poke(unique_name, 72, struct.pack("<Q", 1 << 50))  # tail far past head
        with pytest.raises(ss.CorruptSegmentError):
            q.put(b"x", timeout=0.01)


@pytest.mark.skipif(not LINUX, reason="POSIX shm")
def test_truncated_and_foreign_segments(unique_name):
    from multiprocessing import shared_memory
    shm = shared_memory.SharedMemory(name=unique_name, create=True, size=100)
    try:
        with pytest.raises(ss.CorruptSegmentError):
            ss.Queue.open(unique_name)
    finally:
        shm.close()
        try:
            shm.unlink()
        except FileNotFoundError:
            pass


def test_wrong_kind_both_ways(unique_name):
    st = ss.SharedState.create(unique_name + "-st", ss.CONTROLLER)
    q = ss.Queue.create(unique_name + "-q", capacity=4096)
    try:
        with pytest.raises(ss.WrongKindError):
            ss.Queue.open(unique_name + "-st")
        with pytest.raises(ss.WrongKindError):
            ss.SharedState.open(unique_name + "-q")
    finally:
        st.close()
        q.close()


def test_last_close_removes_the_segment(unique_name):
    q = ss.Queue.create(unique_name, capacity=4096)
    if LINUX:
        assert os.path.exists(f"/dev/shm/{unique_name}")
    q.close()
    if LINUX:
        assert not os.path.exists(f"/dev/shm/{unique_name}")
    q.close()  # twice is fine


@pytest.mark.skipif(not LINUX, reason="pokes /dev/shm")
@pytest.mark.parametrize("offset,value", [(128, 8), (128, 4095), (72, 4088), (72, 1 << 63)])
def test_misaligned_or_wild_positions_are_errors(unique_name, offset, value):
    """head/tail are input too: a position off a record boundary would put a header across
    the ring's end."""
    with ss.Queue.create(unique_name, capacity=4096) as q:
        q.put(b"abc")
        _poke(unique_name, offset, struct.pack("<Q", value))
        with pytest.raises(ss.CorruptSegmentError):
            q.get(timeout=0.01)
            q.put(b"x" * 100, timeout=0.01)


def _owner_word(pid: int) -> int:
    """The owner word sharedstate writes for a live process: (pid << 32) | start-time token."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    token = int(fields[19]) & 0xFFFFFFFF  # field 22 of /proc/PID/stat
    return (pid << 32) | (token or 1)


@pytest.mark.skipif(not LINUX, reason="pokes /dev/shm, reads /proc")
def test_reserve_lock_of_a_dead_producer_is_taken_over(unique_name):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    with ss.Queue.create(unique_name, capacity=4096) as q:
        _poke(unique_name, 64, struct.pack("<Q", (child.pid << 32) | 12345))  # a dead holder
        q.put(b"after the takeover", timeout=5)
        assert q.info()["recoveries"] == 1
        assert q.get(timeout=1) == b"after the takeover"


@pytest.mark.skipif(not LINUX, reason="pokes /dev/shm, reads /proc")
def test_reserve_lock_of_a_live_stuck_producer_times_out_clearly(unique_name):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with ss.Queue.create(unique_name, capacity=4096) as q:
            _poke(unique_name, 64, struct.pack("<Q", _owner_word(child.pid)))  # alive, never lets go
            t0 = time.monotonic()
            with pytest.raises(TimeoutError, match=f"held by pid {child.pid}"):
                q.put(b"x", timeout=0.2)
            assert 0.15 < time.monotonic() - t0 < 5
            _poke(unique_name, 64, struct.pack("<Q", 0))
            q.put(b"free again", timeout=1)
            assert q.get(timeout=1) == b"free again"
    finally:
        child.kill()
        child.wait()


def _cpp_test_exe(name: str):
    d = os.environ.get("SHAREDSTATE_TEST_BIN")
    if not d:
        pytest.skip("SHAREDSTATE_TEST_BIN (the build's tests/cpp directory) is not set")
    for exe in (os.path.join(d, name), os.path.join(d, name + ".exe")):
        if os.path.isfile(exe):
            return exe
    pytest.skip(f"{name} was not built in {d}")


def test_cpp_producer_python_consumer(unique_name):
    """The game's side in C++ (tests/cpp/test_queue.cpp's "producer" child), Python consuming."""
    exe = _cpp_test_exe("test_queue")
    n = 20_000
    with ss.Queue.create(unique_name, capacity=1 << 14) as q:
        child = subprocess.Popen([exe, "child", "producer", unique_name, "5", str(n)])
        _children.append(child)
        for seq in range(n):
            m = q.get(timeout=30)
            producer, s, size = HDR.unpack_from(m)
            assert (producer, s) == (5, seq) and len(m) == HDR.size + size
            # C++ size_for / payload (tests/cpp/test_queue.cpp), checked on a sample.
            assert size == (((seq * 2654435761) & 0xFFFFFFFF) >> 7) % 300 + (3000 if seq % 97 == 0 else 0)
            if seq % 101 == 0:
                assert m[HDR.size:] == bytes(((seq * 31 + i * 7 + 5) & 0xFF) for i in range(size))
        assert child.wait(timeout=30) == 0
