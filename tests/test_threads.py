"""Threads sharing one object: SharedState, Queue, Pipe, PipeServer, Mailslot, Semaphore.

On a free-threaded CPython (PYTHON_GIL=0) the threads really run at once; with the GIL they
interleave at every switch interval (set very short here) and while a call has released the
GIL. The invariants are the same: every snapshot consistent and immutable once returned, no
message lost or duplicated, close() from another thread gives the others the "closed"
ValueError (a blocked call returns, it does not hang), views outlive close, nothing leaks,
never a crash.
"""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import sysconfig
import threading

import pytest

import sharedstate as ss
from conftest import LINUX

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
XY = ss.Layout([("x", "<i8"), ("y", "<i8"), ("tag", "S8")])
JOIN = 120  # seconds: a hang guard for joins (a hang fails the test instead of the run)


@pytest.fixture(autouse=True)
def fast_switching():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # with the GIL: switch threads as often as possible
    yield
    sys.setswitchinterval(old)


class Crew:
    """Threads that record any exception instead of losing it."""

    def __init__(self):
        self.threads, self.errors = [], []

    def spawn(self, fn, *args):
        def run():
            try:
                fn(*args)
            except BaseException as e:  # noqa: BLE001 - reported by join()
                self.errors.append(e)
        t = threading.Thread(target=run, daemon=True)
        self.threads.append(t)
        t.start()
        return t

    def join(self):
        for t in self.threads:
            t.join(JOIN)
        alive = [t for t in self.threads if t.is_alive()]
        assert not alive, f"{len(alive)} thread(s) still running after {JOIN}s"
        if self.errors:
            raise self.errors[0]


def is_closed_error(e: BaseException) -> bool:
    return isinstance(e, ValueError) and "closed" in str(e)


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd")) if LINUX else 0


# ------------------------------------------------------------------ SharedState
def test_state_readers_and_writers_see_only_consistent_immutable_snapshots(unique_name):
    n_writes, n_readers = 4000, 6
    with ss.SharedState.create(unique_name, XY) as st:
        st.write(x=0, y=0, tag=b"w0")
        done = threading.Event()
        crew = Crew()

        def writer(k):
            for i in range(1, n_writes + 1):
                st.write(x=i, y=i, tag=b"w%d" % k)
                if i % 3 == 0:
                    st.x = -i  # one field: x != y until the next write (readers skip the check then)
                    st.write(x=i, y=i, tag=b"w%d" % k)

        def reader():
            held, last_v = [], -1
            while not done.is_set():
                s = st.read()
                assert s.x == s.y or s.x < 0, f"torn snapshot {s}"
                assert s.tag in (b"w0", b"w1", b"w2"), s
                held.append((s, tuple(s)))
                if len(held) > 64:
                    for snap, was in held:  # a snapshot a thread holds never changes afterwards
                        assert tuple(snap) == was, f"snapshot changed from {was} to {tuple(snap)}"
                    held.clear()
                v = st.version
                assert v >= last_v
                last_v = v
                x = st.x  # one field, atomically
                assert isinstance(x, int)
            for snap, was in held:
                assert tuple(snap) == was

        for _ in range(n_readers):
            crew.spawn(reader)
        writers = [crew.spawn(writer, k) for k in (1, 2)]
        for w in writers:
            w.join(JOIN)
        done.set()
        crew.join()
        s = st.read()
        assert s.x == s.y == n_writes


def test_state_close_from_another_thread_while_others_read_write_and_wait(unique_name):
    for cycle in range(25):
        st = ss.SharedState.create(f"{unique_name}-{cycle}", XY)
        st.write(x=1, y=1)
        view = st.view()
        started = threading.Barrier(6)
        crew = Crew()
        closed_seen = []

        def until_closed(op):
            started.wait()
            try:
                while True:
                    op()
            except ValueError as e:
                assert is_closed_error(e), e
                closed_seen.append(1)

        def read():
            s = st.read()
            assert s.x == s.y

        def write():
            v = st.version
            st.write(x=v, y=v)

        def field():
            st.x

        def wait():
            st.wait(timeout=None)  # blocks until a write, or until close() ends it

        for op in (read, write, field, wait, lambda: st.read_into(bytearray(XY.size))):
            crew.spawn(until_closed, op)
        started.wait()
        for _ in range(cycle % 5):
            st.read()
        st.close()
        crew.join()
        assert len(closed_seen) == 5
        assert st.closed
        with pytest.raises(ValueError, match="closed"):
            st.read()
        with pytest.raises(ValueError, match="closed"):
            st.x
        assert int(view["x"][0]) == int(view["y"][0])  # the view outlives close()
        del view


def test_state_wait_in_another_thread_returns_when_closed(unique_name):
    st = ss.SharedState.create(unique_name, XY)
    crew = Crew()
    result = []

    def waiter():
        try:
            st.wait(timeout=None)
        except ValueError as e:
            result.append(e)

    t = crew.spawn(waiter)
    while st.info()["waiters"] == 0 and t.is_alive():  # parked in the kernel, GIL released
        threading.Event().wait(0.001)
    st.close()
    crew.join()
    assert len(result) == 1 and is_closed_error(result[0]), result


def test_state_no_leak_over_many_threaded_cycles(unique_name):
    def cycle(i):
        with ss.SharedState.create(f"{unique_name}-{i % 4}", XY) as st:
            crew = Crew()
            for _ in range(3):
                crew.spawn(lambda: [st.read() for _ in range(200)])
            crew.spawn(lambda: [st.write(x=j, y=j) for j in range(200)])
            crew.join()
            return sys.getrefcount(st)

    base_rc = cycle(0)
    gc.collect()
    fds = fd_count()
    for i in range(1, 40):
        assert cycle(i) == base_rc
    gc.collect()
    assert fd_count() == fds


# ------------------------------------------------------------------ Queue
@pytest.mark.parametrize("how", ["get", "get_into", "get_view"])
def test_queue_many_producer_and_consumer_threads_nothing_lost_or_duplicated(unique_name, how):
    n_prod, n_cons, per = 4, 3, 1500
    with ss.Queue.create(unique_name, capacity=1 << 14, max_message=64) as q:
        crew = Crew()
        got = [[] for _ in range(n_cons)]

        def producer(p):
            for i in range(per):
                q.put(b"%d:%d" % (p, i), timeout=60)

        def consumer(c):
            buf = bytearray(64)
            while True:
                if how == "get":
                    m = q.get(timeout=60)
                elif how == "get_into":
                    m = bytes(buf[:q.get_into(buf, timeout=60)])
                else:
                    with q.get_view(timeout=60) as v:
                        m = bytes(v)
                if m == b"stop":
                    return
                got[c].append(m)

        for c in range(n_cons):
            crew.spawn(consumer, c)
        producers = [crew.spawn(producer, p) for p in range(n_prod)]
        for t in producers:
            t.join(JOIN)
        for _ in range(n_cons):
            q.put(b"stop", timeout=60)
        crew.join()
        everything = [m for g in got for m in g]
        assert len(everything) == n_prod * per, "lost or duplicated messages"
        assert set(everything) == {b"%d:%d" % (p, i) for p in range(n_prod) for i in range(per)}
        for g in got:  # the queue is FIFO: each consumer sees each producer's messages in order
            last = {}
            for m in g:
                p, i = map(int, m.split(b":"))
                assert i > last.get(p, -1)
                last[p] = i
        assert len(q) == 0


def test_queue_close_ends_blocked_producers_and_consumers(unique_name):
    full = ss.Queue.create(unique_name + "-full", capacity=1 << 12, max_message=64)
    empty = ss.Queue.create(unique_name + "-empty", capacity=1 << 12, max_message=64)
    while True:
        try:
            full.put(b"x" * 60, timeout=0)
        except TimeoutError:
            break
    crew = Crew()
    outcome = []

    def blocked(op):
        try:
            op()
            outcome.append("returned")
        except ValueError as e:
            outcome.append("closed" if is_closed_error(e) else repr(e))

    crew.spawn(blocked, lambda: full.put(b"y", timeout=None))
    crew.spawn(blocked, lambda: full.put(b"z", timeout=None))
    crew.spawn(blocked, lambda: empty.get(timeout=None))
    crew.spawn(blocked, lambda: empty.get_into(bytearray(64), timeout=None))  # waits for the consumer lock
    threading.Event().wait(0.2)  # (not a limit: only lets them block first; either way they must end)
    full.close()
    empty.close()
    crew.join()
    assert outcome == ["closed"] * 4, outcome
    for q in (full, empty):
        with pytest.raises(ValueError, match="closed"):
            q.put(b"late")
        with pytest.raises(ValueError, match="closed"):
            q.get(timeout=0)


def test_queue_close_while_threads_put_and_get(unique_name):
    fds = fd_count()
    for cycle in range(20):
        q = ss.Queue.create(f"{unique_name}-{cycle}", capacity=1 << 12, max_message=64)
        crew = Crew()
        view_bytes = []

        def put():
            try:
                while True:
                    q.put(b"m" * 32, timeout=None)
            except ValueError as e:
                assert is_closed_error(e), e

        def get():
            try:
                while True:
                    q.get(timeout=None)
            except ValueError as e:
                assert is_closed_error(e), e

        def view():
            try:
                while True:
                    with q.get_view(timeout=None) as v:
                        view_bytes.append(bytes(v[:1]))
            except ValueError as e:
                assert is_closed_error(e), e

        for op in (put, put, get, view):
            crew.spawn(op)
        while len(view_bytes) < 5 and not crew.errors:
            threading.Event().wait(0.001)
        q.close()
        crew.join()
        assert q.closed
    gc.collect()
    assert fd_count() == fds


# ------------------------------------------------------------------ Pipe
def connected_pair(name):
    srv = ss.PipeServer(name)
    box = []
    t = threading.Thread(target=lambda: box.append(srv.accept(timeout=30)))
    t.start()
    a = ss.Pipe.connect(name, timeout=30)
    t.join(JOIN)
    return srv, a, box[0]


def test_pipe_sender_and_receiver_threads_share_both_ends(unique_name):
    srv, a, b = connected_pair(unique_name)
    n_send, n_recv, per = 3, 2, 1000
    crew = Crew()
    got = [[] for _ in range(n_recv)]

    def sender(k):
        for i in range(per):
            a.send(b"%d:%d:" % (k, i) + b"p" * (i % 300), timeout=60)

    def receiver(r):
        buf = bytearray(1024)
        while True:
            m = b.recv(timeout=60) if r % 2 == 0 else bytes(buf[:b.recv_into(buf, timeout=60)])
            if m == b"stop":
                return
            got[r].append(m)

    for r in range(n_recv):
        crew.spawn(receiver, r)
    senders = [crew.spawn(sender, k) for k in range(n_send)]
    for t in senders:
        t.join(JOIN)
    for _ in range(n_recv):
        a.send(b"stop")
    crew.join()
    keys = [tuple(m.split(b":")[:2]) for g in got for m in g]
    assert len(keys) == n_send * per and set(keys) == {(b"%d" % k, b"%d" % i) for k in range(n_send) for i in range(per)}
    for g in got:  # every message whole, each sender's in order
        last = {}
        for m in g:
            k, i, pad = m.split(b":")
            assert pad == b"p" * (int(i) % 300)
            assert int(i) > last.get(k, -1)
            last[k] = int(i)
    for x in (a, b, srv):
        x.close()


def test_pipe_close_from_another_thread_ends_blocked_recv_and_send(unique_name):
    fds = fd_count()
    for cycle in range(10):
        srv, a, b = connected_pair(f"{unique_name}-{cycle}")
        crew = Crew()
        outcome = []

        def blocked(op):
            try:
                while True:
                    op()
            except (ValueError, EOFError, BrokenPipeError) as e:
                outcome.append(type(e).__name__ if not isinstance(e, ValueError) or is_closed_error(e) else repr(e))

        crew.spawn(blocked, lambda: b.recv(timeout=None))
        crew.spawn(blocked, lambda: b.recv(timeout=None))
        crew.spawn(blocked, lambda: a.send(b"s" * 100000, timeout=None))  # fills the socket, then blocks
        threading.Event().wait(0.05)
        b.close() if cycle % 2 else a.close()
        (a if cycle % 2 else b).close()
        crew.join()
        assert len(outcome) == 3, outcome
        assert all(o in ("ValueError", "EOFError", "BrokenPipeError") for o in outcome), outcome
        with pytest.raises(ValueError, match="closed"):
            a.recv(timeout=0)
        srv.close()
    gc.collect()
    assert fd_count() == fds


def test_pipe_server_close_ends_accept_in_another_thread(unique_name):
    srv = ss.PipeServer(unique_name)
    crew = Crew()
    outcome = []

    def acceptor():
        try:
            srv.accept(timeout=None)
        except ValueError as e:
            outcome.append(is_closed_error(e))

    crew.spawn(acceptor)
    threading.Event().wait(0.05)
    srv.close()
    crew.join()
    assert outcome == [True]


# ------------------------------------------------------------------ Mailslot, Semaphore
def test_mailslot_writer_threads_and_close_under_a_blocked_reader(unique_name):
    with ss.Mailslot(unique_name, max_message=64) as box:
        crew = Crew()
        writers = [ss.MailslotWriter(unique_name) for _ in range(2)]

        def write(w, k):
            for i in range(300):
                w.send(b"%d:%d" % (k, i), timeout=60)

        got = []

        def read():
            while len(got) < 4 * 300:
                got.append(box.recv(timeout=60))

        crew.spawn(read)
        for k in range(4):
            crew.spawn(write, writers[k % 2], k)  # two threads share each writer
        crew.join()
        assert sorted(got) == sorted(b"%d:%d" % (k, i) for k in range(4) for i in range(300))

        outcome = []

        def blocked():
            try:
                box.recv(timeout=None)
            except ValueError as e:
                outcome.append(is_closed_error(e))

        crew = Crew()
        crew.spawn(blocked)
        crew.spawn(blocked)  # the second waits for the reader lock
        threading.Event().wait(0.05)
        box.close()
        crew.join()
        assert outcome == [True, True]
        for w in writers:
            w.close()


def test_semaphore_close_under_waiters_and_threads_sharing_it(unique_name):
    sem = ss.Semaphore.create(unique_name, 0)
    crew = Crew()
    acquired = []

    def taker():
        while True:
            try:
                if sem.acquire(timeout=None):
                    acquired.append(1)
            except ValueError as e:
                assert is_closed_error(e), e
                return

    for _ in range(4):
        crew.spawn(taker)
    for _ in range(200):
        sem.release()
    while len(acquired) < 200 and not crew.errors:
        threading.Event().wait(0.001)
    sem.close()  # the four are blocked in acquire(): each gets the closed error
    crew.join()
    assert len(acquired) == 200
    with pytest.raises(ValueError, match="closed"):
        sem.release()


# ------------------------------------------------------------------ the GIL stays off
@pytest.mark.skipif(not FREE_THREADED, reason="a free-threaded CPython only")
def test_import_keeps_the_gil_disabled():
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}
    code = ("import sys, sharedstate, sharedstate._core\n"
            "sys.exit(0 if not sys._is_gil_enabled() else 3)")
    r = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, f"the GIL was re-enabled by `import sharedstate`: {r.stderr}"
