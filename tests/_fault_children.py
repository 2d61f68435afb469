"""The peers of tests/test_faults.py: each runs as its own python process (Linux and Windows),
started as `python _fault_children.py ROLE ARGS...`, and is killed or stopped by the test.

Children report on stdout, one line at a time ("ready", counters); the parent reads the lines
with a thread (select() does not work on Windows pipes). Nothing here ends by itself except the
reader, which stops when its stdin closes.
"""
from __future__ import annotations

import os
import struct
import sys
import threading
import time

import sharedstate as ss

# 16 KiB payload: a whole write takes long enough that random kills land inside writes.
BIG = ss.Layout([("tag", "<u4"), ("n", "<u8"), ("fill", "<u4", (4096,))])


def payload(n: int) -> bytes:
    tag = n & 0xFFFFFFFF
    return struct.pack("<IIQ", tag, 0, n) + struct.pack("<I", tag) * 4096


def consistent(s) -> bool:
    return int(s.n) & 0xFFFFFFFF == s.tag and all(v == s.tag for v in (s.fill[0], s.fill[-1], s.fill[2048])) and \
        bool((s.fill == s.fill[0]).all())  # numpy arrays: vectorized


def qmsg(pid: int, seq: int) -> bytes:
    n = 8 + (seq * 37) % 700
    return struct.pack("<IQ", pid, seq) + bytes([(pid + seq) & 255]) * n


def say(*words) -> None:
    print(*words, flush=True)


def forever() -> None:
    while True:
        time.sleep(1)


# ------------------------------------------------------------------------------ roles
def writer(name: str, start: str) -> None:
    st = ss.SharedState.open(name)
    n = int(start)
    while True:  # until killed
        n += 1
        st.write(payload(n))


def reader(name: str) -> None:
    """Reads all along; every ~10 ms prints `reads TORN-COUNT MAX-GAP-US`; ends when stdin closes."""
    st = ss.SharedState.open(name)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    reads = torn = max_gap_us = 0
    last = last_say = time.monotonic_ns()
    while not stop.is_set():
        for _ in range(20):
            if not consistent(st.read()):
                torn += 1
            reads += 1
        now = time.monotonic_ns()
        max_gap_us = max(max_gap_us, (now - last) // 1000)
        last = now
        if now - last_say > 10_000_000:
            say("reads", reads, torn, max_gap_us)
            last_say = time.monotonic_ns()
            last = last_say  # the pipe write is not the reader's wait
    st.close()
    say("done", reads, torn, max_gap_us)


def sleeper() -> None:
    say("ready", os.getpid())
    forever()


def creator(name: str) -> None:
    st = ss.SharedState.create(name, ss.CONTROLLER)
    st.write(x=5)
    say("ready")
    forever()


def producer(name: str) -> None:
    q = ss.Queue.open(name)
    pid, seq = os.getpid(), 0
    say("ready")
    while True:  # until killed
        seq += 1
        q.put(qmsg(pid, seq), timeout=None)


def consumer_once(name: str) -> None:
    q = ss.Queue.open(name)
    say("got", len(q.get(timeout=30)))
    forever()  # holds the consumer claim until killed


def pipe_client(name: str, size: str) -> None:
    p = ss.Pipe.connect(name, timeout=60)
    p.send(b"hello")
    big = b"\xab" * int(size)
    while True:  # until killed, possibly in the middle of a message
        p.send(big)


def sem_holder(name: str) -> None:
    s = ss.Semaphore.open(name)
    assert s.acquire(timeout=30)
    say("held")
    forever()


if __name__ == "__main__":
    # `--go ROLE ...`: start up (interpreter, imports), say "started", then wait for a line on
    # stdin before acting. The tests start a round's peers ahead this way, all at once: under
    # Wine a python takes seconds to start, and the kill must land in the role, not in start-up.
    args = sys.argv[1:]
    if args[0] == "--go":
        args = args[1:]
        say("started")
        sys.stdin.readline()
    globals()[args[0]](*args[1:])
