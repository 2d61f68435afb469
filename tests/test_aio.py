"""asyncio: the *_async methods, one thread per loop however many coroutines wait, and
cancellation that never loses a message."""
from __future__ import annotations

import asyncio
import importlib.util
import os
import random
import subprocess
import sys
import threading

import pytest

import sharedstate as ss

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(HERE, "waitset_child.py")
LINUX = sys.platform.startswith("linux")


def os_threads() -> int:
    if LINUX:
        return len(os.listdir("/proc/self/task"))
    return threading.active_count()


def run(coro):
    return asyncio.run(coro)


def test_wait_async_basic_timeout_and_cancel(unique_name):
    with ss.SharedState.create(unique_name, ss.CONTROLLER) as st:

        async def main():
            v0 = st.version
            with pytest.raises(TimeoutError):
                await st.wait_async(timeout=0.02)
            loop = asyncio.get_running_loop()
            loop.call_later(0.02, lambda: st.write(x=1))
            v = await st.wait_async(since=v0, timeout=10)
            assert v == v0 + 1
            assert await st.wait_async(since=v0, timeout=0) == v  # already passed: at once
            t = asyncio.ensure_future(st.wait_async(timeout=10))
            await asyncio.sleep(0.01)
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            # still usable after the cancel
            loop.call_later(0.02, lambda: st.write(x=2))
            assert await st.wait_async(timeout=10) == v + 1

        run(main())


def test_ten_thousand_waiters_cost_one_thread(unique_name):
    states = [ss.SharedState.create(f"{unique_name}-{i}", ss.CONTROLLER) for i in range(10)]
    try:
        before = os_threads()
        py_before = threading.active_count()
        counts: dict = {}

        async def main():
            v0 = [s.version for s in states]
            tasks = [asyncio.ensure_future(states[i % 10].wait_async(since=v0[i % 10], timeout=60))
                     for i in range(10_000)]
            await asyncio.sleep(0.2)
            counts["during"] = os_threads()
            counts["py_during"] = threading.active_count()
            for s in states:
                s.write(x=1)
            results = await asyncio.gather(*tasks)
            assert len(results) == 10_000
            assert all(r == v0[i % 10] + 1 for i, r in enumerate(results))

        run(main())
        assert counts["during"] - before <= 1, counts
        if LINUX:
            assert counts["py_during"] == py_before, "no Python helper thread on Linux (the loop watches ws.fileno())"
    finally:
        for s in states:
            s.close()


def test_cancelled_get_async_loses_no_message(unique_name):
    n_msgs = 400
    q = ss.Queue.create(unique_name, capacity=1 << 16)
    k = subprocess.Popen([sys.executable, CHILD, "put-many", unique_name, str(n_msgs)], stdout=subprocess.PIPE, text=True)
    got: list = []
    try:
        assert k.stdout is not None
        assert k.stdout.readline().strip() == "ready"

        async def main():
            rng = random.Random(12)
            cancelled = 0
            tasks = [asyncio.ensure_future(q.get_async(timeout=60)) for _ in range(1000)]
            # Cancel every one of them while messages arrive, at random moments; most are
            # still pending, some have just been woken, some have completed.
            order = list(range(1000))
            rng.shuffle(order)
            for j, i in enumerate(order):
                if j % 50 == 0:
                    await asyncio.sleep(0.001)
                if tasks[i].cancel():
                    cancelled += 1
            for t in tasks:
                try:
                    got.append((tasks.index(t), await t))
                except asyncio.CancelledError:
                    pass
            assert cancelled > 0
            # Later gets (async and blocking) see every remaining message.
            while len(got) < n_msgs:
                try:
                    got.append((10_000 + len(got), await q.get_async(timeout=10)))
                except TimeoutError:
                    break

        run(main())
        assert k.wait(timeout=30) == 0
        while True:
            try:
                got.append((20_000 + len(got), q.get(timeout=0)))
            except TimeoutError:
                break
        msgs = [m for _, m in got]
        assert sorted(msgs, key=int) == [b"%d" % i for i in range(n_msgs)], "every message exactly once"
    finally:
        if k.poll() is None:
            k.kill()
            k.wait()
        q.close()


def test_get_async_order_and_timeout(unique_name):
    with ss.Queue.create(unique_name, capacity=4096) as q:

        async def main():
            with pytest.raises(TimeoutError):
                await q.get_async(timeout=0.01)
            a = asyncio.ensure_future(q.get_async(timeout=10))
            b = asyncio.ensure_future(q.get_async(timeout=10))
            await asyncio.sleep(0.01)
            q.put(b"1")
            q.put(b"2")
            assert sorted([await a, await b]) == [b"1", b"2"]

        run(main())


def test_mailslot_semaphore_async(unique_name):
    box = ss.Mailslot(unique_name + "-box")
    w = ss.MailslotWriter(unique_name + "-box")
    sem = ss.Semaphore.create(unique_name + "-sem", 0)
    try:

        async def main():
            loop = asyncio.get_running_loop()
            loop.call_later(0.02, lambda: w.send(b"hi"))
            assert await box.recv_async(timeout=10) == b"hi"
            assert await sem.acquire_async(timeout=0.01) is False
            loop.call_later(0.02, sem.release)
            assert await sem.acquire_async(timeout=10) is True
            assert not sem.acquire(0)  # it was taken by acquire_async

        run(main())
    finally:
        for o in (w, box, sem):
            o.close()


def test_pipe_async(unique_name):
    srv = ss.PipeServer(unique_name)
    try:

        async def main():
            loop = asyncio.get_running_loop()
            fut = loop.run_in_executor(None, lambda: ss.Pipe.connect(unique_name, timeout=10))
            conn = await srv.accept_async(timeout=10)
            cli = await fut
            loop.call_later(0.02, lambda: cli.send(b"ping"))
            assert await conn.recv_async(timeout=10) == b"ping"
            t = asyncio.ensure_future(conn.recv_async(timeout=10))
            await asyncio.sleep(0.01)
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            cli.send(b"after-cancel")
            assert await conn.recv_async(timeout=10) == b"after-cancel"
            cli.close()
            with pytest.raises(EOFError):
                await conn.recv_async(timeout=10)
            conn.close()

        run(main())
    finally:
        srv.close()


@pytest.mark.parametrize("example", ["aio_reader.py", "selectors_reader.py"])
def test_examples_run(unique_name, example):
    if example == "selectors_reader.py" and not LINUX:
        pytest.skip("ws.fileno() is the Linux handle")
    path = os.path.join(os.path.dirname(HERE), "examples", example)
    r = subprocess.run([sys.executable, path, unique_name, unique_name + "-q", "--demo", "--seconds", "2"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [ln for ln in lines if ln.startswith("command:")] == ["command: jump 0", "command: jump 1", "command: jump 2"]
    states = [ln for ln in lines if ln.startswith("state ")]
    assert states and "x=2 y=4" in states[-1], lines


def test_helper_thread_way(unique_name, monkeypatch):
    """The way Windows loops wait (one helper thread in ws.wait()), exercised everywhere."""
    from sharedstate import _aio

    monkeypatch.setattr(_aio._LoopWatcher, "USE_READER", False)
    st = ss.SharedState.create(unique_name, ss.CONTROLLER)
    q = ss.Queue.create(unique_name + "-q", capacity=4096)
    try:
        before = set(threading.enumerate())  # helper threads of earlier tests may still be ending
        seen: dict = {}

        async def main():
            loop = asyncio.get_running_loop()
            tasks = [asyncio.ensure_future(st.wait_async(timeout=20)) for _ in range(100)]
            getters = [asyncio.ensure_future(q.get_async(timeout=20)) for _ in range(3)]
            await asyncio.sleep(0.05)
            seen["threads"] = len(set(threading.enumerate()) - before)
            loop.call_later(0.01, lambda: st.write(x=1))
            assert len(set(await asyncio.gather(*tasks))) == 1
            getters[0].cancel()
            for m in (b"a", b"b"):
                q.put(m)
            got = sorted([await getters[1], await getters[2]])
            assert got == [b"a", b"b"]

        run(main())
        assert seen["threads"] == 1, seen
    finally:
        st.close()
        q.close()


@pytest.mark.skipif(importlib.util.find_spec("PySide6") is None,
                    reason="PySide6 is not installed (the qt extra: pip install '.[qt]')")
def test_qt_example_redraws_on_every_change_without_polling(unique_name):
    """examples/qt_controller.py: Qt's own loop wakes through the WaitSet's handle (offscreen)."""
    path = os.path.join(os.path.dirname(HERE), "examples", "qt_controller.py")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    r = subprocess.run([sys.executable, path, unique_name, "--demo", "--seconds", "2"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    draws = [ln for ln in r.stdout.splitlines() if ln.startswith("redraw: ")]
    assert draws, r.stdout + r.stderr
    versions = [int(ln.split()[1][1:]) for ln in draws]
    assert versions == sorted(set(versions)), draws  # one redraw per change seen, never a repeat
    assert draws[-1].endswith("x=3  y=6  running=True"), draws  # the last write is on screen
