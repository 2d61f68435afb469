"""Semaphore across real processes: counts, timeouts, maximum, names, lifetime, Ctrl-C."""
from __future__ import annotations

import _thread
import os
import sys
import threading
import time

import pytest

import _procctl
import sharedstate as ss

LINUX = sys.platform.startswith("linux")


child = _procctl.python_child  # returns once the child has started (its start-up is not timed)


def sem_file(name: str) -> str:
    return "/dev/shm/sem." + name


TAKER = """
    import sys, sharedstate as ss
    s = ss.Semaphore.open(sys.argv[1])
    done = ss.Semaphore.open(sys.argv[2])
    for _ in range(int(sys.argv[3])):  # the parent releases once both takers started (slow under Wine)
        if not s.acquire(timeout=60):
            sys.exit(1)
    done.release()
    s.close(); done.close()
"""


def test_counts_across_processes(unique_name):
    s = ss.Semaphore.create(unique_name, initial=0)
    done = ss.Semaphore.create(unique_name + "-done", initial=0)
    kids = [child(TAKER, unique_name, unique_name + "-done", n) for n in ("3", "4")]
    s.release(2)
    time.sleep(0.05)
    s.release(5)
    assert done.acquire(timeout=30) and done.acquire(timeout=30)
    assert [k.wait(timeout=10) for k in kids] == [0, 0]
    assert s.acquire(timeout=0) is False  # all seven were taken, no more
    s.close()
    done.close()


def test_wait_for_a_release_in_another_process(unique_name):
    with ss.Semaphore.create(unique_name) as s:
        p = child("""
            import sys, time, sharedstate as ss
            o = ss.Semaphore.open(sys.argv[1])
            time.sleep(0.2)
            o.release()
        """, unique_name)
        t0 = time.monotonic()
        assert s.acquire(timeout=10) is True
        assert time.monotonic() - t0 >= 0.1
        assert p.wait(timeout=10) == 0


def test_timeouts(unique_name):
    with ss.Semaphore.create(unique_name, initial=1) as s:
        assert s.acquire(timeout=0) is True
        assert s.acquire(timeout=0) is False
        t0 = time.monotonic()
        assert s.acquire(timeout=0.15) is False
        assert 0.12 < time.monotonic() - t0 < 2
        with pytest.raises(ValueError):
            s.acquire(timeout=-1)
        s.release()
        assert s.acquire() is True


def test_maximum(unique_name):
    with ss.Semaphore.create(unique_name, initial=1, maximum=2) as s:
        s.release()
        with pytest.raises(ValueError):
            s.release()
        with pytest.raises(ValueError):
            s.release(0)
        assert s.acquire(timeout=0) and s.acquire(timeout=0) and not s.acquire(timeout=0)
    with pytest.raises(ValueError):
        ss.Semaphore.create(unique_name + "-x", initial=3, maximum=2)
    with pytest.raises(ValueError):
        ss.Semaphore.create(unique_name + "-y", initial=-1)


def test_exists_and_missing(unique_name):
    with ss.Semaphore.create(unique_name):
        with pytest.raises(FileExistsError):
            ss.Semaphore.create(unique_name)
    with pytest.raises(FileNotFoundError):
        ss.Semaphore.open(unique_name + "-missing")


@pytest.mark.parametrize("bad", ["", "a/b", "a\\b", "x" * 300, "nul\0byte"])
def test_bad_names(bad):
    with pytest.raises(ValueError):
        ss.Semaphore.create(bad)
    with pytest.raises(ValueError):
        ss.Semaphore.open(bad)


def test_context_manager_closes_without_unlinking(unique_name):
    o = None
    with ss.Semaphore.create(unique_name) as s:
        o = ss.Semaphore.open(unique_name)
    assert s.closed
    with pytest.raises(ValueError):
        s.acquire(timeout=0)
    o.release()  # still alive: o holds it
    again = ss.Semaphore.open(unique_name)
    assert again.acquire(timeout=0)
    again.close()
    o.close()


def test_lifetime_ends_with_the_last_holder(unique_name):
    s = ss.Semaphore.create(unique_name)
    p = child("""
        import sys, time, sharedstate as ss
        ss.Semaphore.open(sys.argv[1])
        print("open", flush=True)
        time.sleep(60)
    """, unique_name)
    assert p.stdout is not None and p.stdout.readline().strip() == "open"
    p.kill()  # a dead holder does not keep it alive
    p.wait()
    s.close()
    with pytest.raises(FileNotFoundError):
        ss.Semaphore.open(unique_name)
    if LINUX:
        assert not os.path.exists(sem_file(unique_name))


@pytest.mark.skipif(not LINUX, reason="a Windows object always dies with its last handle: persistent is Linux-only")
def test_persistent_and_unlink(unique_name):
    s = ss.Semaphore.create(unique_name, initial=2, persistent=True)
    s.close()
    o = ss.Semaphore.open(unique_name)
    assert o.acquire(timeout=0)
    assert o.unlink() is True
    assert o.unlink() is False
    assert not os.path.exists(sem_file(unique_name))
    o.close()
    ss.Semaphore.create(unique_name).close()  # the name is free again


def test_ctrl_c_interrupts_acquire(unique_name):
    with ss.Semaphore.create(unique_name) as s:
        timer = threading.Timer(0.2, _thread.interrupt_main)
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            s.acquire()
        assert time.monotonic() - t0 < 2
        timer.join()


def test_close_while_another_thread_waits(unique_name):
    s = ss.Semaphore.create(unique_name)
    got = []

    def waiter():
        try:
            got.append(s.acquire(timeout=30))
        except ValueError as e:
            got.append(e)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.1)
    s.close()  # the waiter keeps the object until it returns, which it does within a slice
    t.join(60)
    assert len(got) == 1 and isinstance(got[0], ValueError) and "closed" in str(got[0]), got
    if LINUX:
        assert not os.path.exists(sem_file(unique_name))
