"""WaitSet from Python: real child processes, readiness exactly once per change, in the order
added; killed writers, removal while another thread waits, Ctrl-C, selectors via fileno()."""
from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import threading
import time

import pytest

import sharedstate as ss

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(HERE, "waitset_child.py")
LINUX = sys.platform.startswith("linux")


def child(*args: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, CHILD, *args], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    return p


def expect_line(p: subprocess.Popen, want: str) -> None:
    assert p.stdout is not None
    line = p.stdout.readline().strip()
    assert line == want, f"child said {line!r}, expected {want!r}"


@pytest.mark.parametrize("order", ["states-first", "queues-first"])
def test_n_writers_each_readiness_once_per_change(unique_name, order):
    n, rounds = 3, 4
    states = [ss.SharedState.create(f"{unique_name}-s{i}", ss.CONTROLLER) for i in range(n)]
    queues = [ss.Queue.create(f"{unique_name}-q{i}", capacity=4096) for i in range(n)]
    gos = [ss.Semaphore.create(f"{unique_name}-g{i}", 0) for i in range(n)]
    kids = [child("write-and-put", gos[i].name, states[i].name, queues[i].name, str(rounds)) for i in range(n)]
    try:
        for k in kids:
            expect_line(k, "ready")
        members = states + queues if order == "states-first" else queues + states
        ws = ss.WaitSet()
        for m in members:
            ws.add(m)
        assert len(ws) == 2 * n
        position = {id(m): i for i, m in enumerate(members)}
        for r in range(rounds):
            seen_states: dict = {}
            got_msgs: dict = {}
            for g in gos:
                g.release()
            deadline = time.monotonic() + 30
            while len(seen_states) < n or len(got_msgs) < n:
                assert time.monotonic() < deadline, (seen_states, got_msgs)
                ready = ws.wait(timeout=10)
                assert ready, "wait() never returns an empty list"
                idx = [position[id(m)] for m in ready]
                assert idx == sorted(idx), "reported in the order added"
                for m in ready:
                    if isinstance(m, ss.SharedState):
                        assert m.name not in seen_states, "a state reported twice for one change"
                        seen_states[m.name] = m.read().x
                    else:
                        got_msgs[m.name] = m.get(timeout=0)
                        with pytest.raises(TimeoutError):
                            m.get(timeout=0)
            assert sorted(seen_states.values()) == [r + 1] * n
            assert sorted(got_msgs.values()) == [b"%d" % (r + 1)] * n
            with pytest.raises(TimeoutError):
                ws.wait(timeout=0)
        for k in kids:
            assert k.wait(timeout=30) == 0
    finally:
        for k in kids:
            if k.poll() is None:
                k.kill()
                k.wait()
        for o in states + queues + gos:
            o.close()


def test_every_change_seen_once_with_a_lockstep_writer(unique_name):
    with ss.SharedState.create(unique_name, ss.CONTROLLER) as st:
        other = ss.SharedState.create(unique_name + "-o", ss.CONTROLLER)
        ws = ss.WaitSet()
        ws.add(other)
        ws.add(st)
        k = child("writer-loop", unique_name, "200")
        try:
            expect_line(k, "ready")
            for i in range(1, 201):
                # Our own write (y) is a change too, and may be reported together with the
                # child's next one: wait until the child's value arrives, never missing it.
                while True:
                    assert ws.wait(timeout=10) == [st]
                    x = st.read().x
                    if x == i:
                        break
                    assert x == i - 1, x
                st.write(y=i)  # tells the child to go on
            assert k.wait(timeout=30) == 0
        finally:
            if k.poll() is None:
                k.kill()
                k.wait()
            other.close()


def test_writer_killed_mid_wait(unique_name):
    with ss.SharedState.create(unique_name, ss.CONTROLLER) as st:
        ws = ss.WaitSet()
        ws.add(st)
        k = child("write-then-hang", unique_name)
        expect_line(k, "wrote")
        assert ws.wait(timeout=10) == [st]
        result: list = []

        def waiter() -> None:
            try:
                result.append(ws.wait(timeout=10))
            except BaseException as e:  # noqa: BLE001
                result.append(e)

        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(0.05)
        k.kill()
        k.wait()
        time.sleep(0.05)
        assert result == []  # a dead writer is not a change
        st.write(x=2)
        t.join(20)
        assert result == [[st]]


def test_remove_while_another_thread_waits(unique_name):
    a = ss.SharedState.create(unique_name + "-a", ss.CONTROLLER)
    b = ss.SharedState.create(unique_name + "-b", ss.CONTROLLER)
    try:
        ws = ss.WaitSet()
        ws.add(a)
        out: list = []
        t = threading.Thread(target=lambda: out.append(ws.wait(timeout=20)))
        t.start()
        time.sleep(0.05)
        ws.remove(a)
        assert a not in ws
        with pytest.raises(KeyError):
            ws.remove(a)
        ws.add(b)
        a.write(x=1)  # not a member any more
        time.sleep(0.05)
        assert out == []
        b.write(x=1)
        t.join(20)
        assert out == [[b]]
    finally:
        a.close()
        b.close()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_in_wait(unique_name):
    with ss.SharedState.create(unique_name, ss.CONTROLLER):
        k = child("wait-forever", unique_name)
        try:
            expect_line(k, "waiting")
            time.sleep(0.1)
            k.send_signal(signal.SIGINT)
            assert k.wait(timeout=20) == 3
            expect_line(k, "interrupted")
        finally:
            if k.poll() is None:
                k.kill()
                k.wait()


def test_semaphore_queue_mailslot_members(unique_name):
    sem = ss.Semaphore.create(unique_name + "-sem", 0)
    q = ss.Queue.create(unique_name + "-q", capacity=4096)
    box = ss.Mailslot(unique_name + "-box")
    w = ss.MailslotWriter(unique_name + "-box")
    try:
        ws = ss.WaitSet()
        for o in (sem, q, box):
            ws.add(o)
        with pytest.raises(TimeoutError):
            ws.wait(timeout=0)
        threading.Timer(0.03, sem.release).start()
        assert ws.wait(timeout=10) == [sem]
        assert ws.wait(timeout=0) == [sem]  # readiness only: still there
        assert sem.acquire(0)
        w.send(b"m")
        q.put(b"x")
        assert ws.wait(timeout=10) == [q, box]
        assert q.get(timeout=0) == b"x" and box.recv(timeout=0) == b"m"
        with pytest.raises(TimeoutError):
            ws.wait(timeout=0.01)
    finally:
        for o in (w, box, q, sem):
            o.close()


def test_pipe_and_server_members(unique_name):
    srv = ss.PipeServer(unique_name)
    st = ss.SharedState.create(unique_name, ss.CONTROLLER)
    try:
        ws = ss.WaitSet()
        ws.add(st)
        ws.add(srv)
        cli = ss.Pipe.connect(unique_name, timeout=5)
        assert ws.wait(timeout=10) == [srv]
        conn = srv.accept(timeout=0)
        ws.add(conn)
        cli.send(b"hello")
        assert ws.wait(timeout=10) == [conn]
        assert conn.recv(timeout=0) == b"hello"
        st.write(x=1)
        assert ws.wait(timeout=10) == [st]
        cli.close()
        assert ws.wait(timeout=10) == [conn]  # the peer is gone: recv says so
        with pytest.raises(EOFError):
            conn.recv(timeout=0)
        ws.remove(conn)
        conn.close()
    finally:
        st.close()
        srv.close()


def test_pipe_member_after_a_timed_out_recv_zero_length_and_long_messages(unique_name):
    """Windows: the armed read a set parks on is the one recv() collects; a recv that timed
    out leaves it armed, and nothing is lost or seen twice."""
    srv = ss.PipeServer(unique_name)
    cli = ss.Pipe.connect(unique_name, timeout=5)
    got: list = []
    # Accepted in a thread that then exits (Windows cancels the I/O a thread started when it
    # exits: the armed read and the server's next armed connect are armed again).
    t = threading.Thread(target=lambda: got.append(srv.accept(timeout=5)))
    t.start()
    t.join(10)
    conn = got[0]
    try:
        ws = ss.WaitSet()
        ws.add(srv)
        with pytest.raises(TimeoutError):
            ws.wait(timeout=0.05)  # the thread's exit is no client
        cli2 = ss.Pipe.connect(unique_name, timeout=5)
        assert ws.wait(timeout=10) == [srv]
        srv.accept(timeout=0).close()
        cli2.close()
        ws.remove(srv)
        with pytest.raises(TimeoutError):
            conn.recv(timeout=0.05)
        ws.add(conn)
        with pytest.raises(TimeoutError):
            ws.wait(timeout=0.05)
        for msg in (b"", b"x" * 200_000, b"after"):
            t = threading.Thread(target=cli.send, args=(msg,))
            t.start()
            assert ws.wait(timeout=10) == [conn]
            assert conn.recv(timeout=10) == msg
            t.join(10)
            with pytest.raises(TimeoutError):
                ws.wait(timeout=0.02)  # taken: not ready again
        cli.close()
        assert ws.wait(timeout=10) == [conn]
        with pytest.raises(EOFError):
            conn.recv(timeout=0)
    finally:
        conn.close()
        cli.close()
        srv.close()


def test_since_and_bad_members(unique_name):
    with ss.SharedState.create(unique_name, ss.CONTROLLER) as st:
        st.write(x=1)
        ws = ss.WaitSet()
        ws.add(st, since=0)
        assert ws.wait(timeout=0) == [st]
        with pytest.raises(TimeoutError):
            ws.wait(timeout=0)
        ws.add(st, since=0)  # again: since moves back
        assert ws.wait(timeout=0) == [st]
        with pytest.raises(TypeError):
            ws.add(object())
        q = ss.Queue.create(unique_name + "-q", capacity=4096)
        with pytest.raises(ValueError):
            ws.add(q, since=3)
        q.close()
        with pytest.raises(TimeoutError):
            ss.WaitSet().wait(timeout=0.01)


@pytest.mark.skipif(not LINUX, reason="fileno() is the Linux handle (Windows: ws.handle)")
def test_fileno_with_selectors(unique_name):
    with ss.SharedState.create(unique_name, ss.CONTROLLER) as st:
        ws = ss.WaitSet()
        ws.add(st)
        sel = selectors.DefaultSelector()
        sel.register(ws.fileno(), selectors.EVENT_READ)
        assert sel.select(timeout=0.02) == []
        threading.Timer(0.03, lambda: st.write(x=5)).start()
        assert len(sel.select(timeout=10)) == 1
        assert ws.wait(timeout=0) == [st]
        assert sel.select(timeout=0.05) == []  # cleared by the report
        st.write(x=6)
        assert len(sel.select(timeout=10)) == 1
        sel.close()


@pytest.mark.skipif(sys.platform != "win32", reason="the Windows handle")
def test_handle_on_windows(unique_name):
    import ctypes

    with ss.SharedState.create(unique_name, ss.CONTROLLER) as st:
        ws = ss.WaitSet()
        ws.add(st)
        h = ws.handle
        wait = ctypes.windll.kernel32.WaitForSingleObject
        assert wait(ctypes.c_void_p(h), 20) == 0x102  # WAIT_TIMEOUT
        st.write(x=1)
        assert wait(ctypes.c_void_p(h), 10000) == 0
        assert ws.wait(timeout=0) == [st]


def test_a_parked_set_never_steals_a_semaphore_wake(unique_name):
    """glibc's sem_post wakes one waiter: if that is the WaitSet (readiness only), the wake
    must be passed on to a thread blocked in acquire(), which then takes the count."""
    with ss.Semaphore.create(unique_name, 0) as sem:
        for _ in range(20):
            ws = ss.WaitSet()
            ws.add(sem)
            got: list = []
            seen: list = []
            t1 = threading.Thread(target=lambda: got.append(sem.acquire(timeout=20)))

            def watch() -> None:
                try:
                    seen.append(ws.wait(timeout=0.5))  # may or may not see the count: readiness only
                except TimeoutError:
                    seen.append([])

            t2 = threading.Thread(target=watch)
            t1.start()
            t2.start()
            time.sleep(0.02)  # both parked
            sem.release()
            t1.join(30)
            assert got == [True], "the blocked acquire() got the count"
            t2.join(30)
            assert seen in ([[sem]], [[]])
            assert not sem.acquire(0)


def test_producer_killed_mid_put_does_not_hide_later_messages(unique_name):
    with ss.Queue.create(unique_name, capacity=4096) as q:
        ws = ss.WaitSet()
        ws.add(q)
        k = child("die-mid-put", unique_name)
        expect_line(k, "holding")
        q.put(b"after")  # queued behind the record the child is still writing
        with pytest.raises(TimeoutError):
            ws.wait(timeout=0.05)  # the child lives: its record is still coming
        k.kill()
        k.wait()
        assert ws.wait(timeout=10) == [q]  # noticed within a slice or two, no wake-up needed
        assert q.get(timeout=5) == b"after"
