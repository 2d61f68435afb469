"""Single-process costs of Queue put/get (64-byte messages) beside in-process and kernel queues.

    pytest bench/bench_queue_micro.py --benchmark-only --benchmark-group-by=group

One process, so no wake-up ever happens: this is the fast path's own cost (the binding call,
the reserve lock, the copy, the publish). Cross-process throughput and round trips are in
bench/compare.py. Compare within one run; absolute figures drift with the machine.
"""
import os
import queue

import pytest

ss = pytest.importorskip("sharedstate")

MSG = b"m" * 64
BATCH = 1000


@pytest.fixture
def q(bench_name):
    qq = ss.Queue.create(bench_name, capacity=1 << 20)
    yield qq
    qq.close()


# ------------------------------------------------------------------ one put + one get
@pytest.mark.benchmark(group="put+get 64 B")
def test_queue_put_get(benchmark, q):
    put, get = q.put, q.get

    def pair():
        put(MSG)
        return get()

    assert benchmark(pair) == MSG


@pytest.mark.benchmark(group="put+get 64 B")
def test_queue_put_get_into(benchmark, q):
    put, get_into = q.put, q.get_into
    buf = bytearray(64)

    def pair():
        put(MSG)
        return get_into(buf)

    assert benchmark(pair) == 64


@pytest.mark.benchmark(group="put+get 64 B")
def test_queue_put_get_view(benchmark, q):
    put, get_view = q.put, q.get_view

    def pair():
        put(MSG)
        with get_view() as mv:
            return mv[0]

    assert benchmark(pair) == MSG[0]


@pytest.mark.benchmark(group="put+get 64 B")
def test_stdlib_simplequeue_put_get(benchmark):
    sq = queue.SimpleQueue()

    def pair():
        sq.put(MSG)
        return sq.get()

    assert benchmark(pair) == MSG


@pytest.mark.benchmark(group="put+get 64 B")
def test_os_pipe_write_read(benchmark):
    r, w = os.pipe()
    try:
        def pair():
            os.write(w, MSG)
            return os.read(r, 64)

        assert benchmark(pair) == MSG
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.benchmark(group="put+get 64 B")
def test_posix_ipc_messagequeue(benchmark, bench_name):
    posix_ipc = pytest.importorskip("posix_ipc")
    mq = posix_ipc.MessageQueue("/" + bench_name, posix_ipc.O_CREX, max_messages=8, max_message_size=64)
    try:
        def pair():
            mq.send(MSG)
            return mq.receive()[0]

        assert benchmark(pair) == MSG
    finally:
        mq.close()
        mq.unlink()


# ------------------------------------------------------------------ batches: puts, then gets
@pytest.mark.benchmark(group="1000 puts then 1000 gets, 64 B")
def test_queue_batch(benchmark, q):
    put, get = q.put, q.get

    def batch():
        for _ in range(BATCH):
            put(MSG)
        for _ in range(BATCH):
            get()

    benchmark(batch)
    per_msg = benchmark.stats.stats.median / BATCH
    benchmark.extra_info["ns per put+get"] = round(per_msg * 1e9, 1)
    benchmark.extra_info["messages/s (one process)"] = round(1 / per_msg)
    assert q.empty()


@pytest.mark.benchmark(group="1000 puts then 1000 gets, 64 B")
def test_stdlib_simplequeue_batch(benchmark):
    sq = queue.SimpleQueue()

    def batch():
        for _ in range(BATCH):
            sq.put(MSG)
        for _ in range(BATCH):
            sq.get()

    benchmark(batch)
    benchmark.extra_info["ns per put+get"] = round(benchmark.stats.stats.median / BATCH * 1e9, 1)


# ------------------------------------------------------------------ mailslot send + recv
@pytest.mark.benchmark(group="mailslot send+recv 64 B")
def test_mailslot_send_recv(benchmark, bench_name):
    with ss.Mailslot(bench_name, max_message=256) as box, ss.MailslotWriter(bench_name) as w:
        send, recv = w.send, box.recv

        def pair():
            send(MSG)
            return recv()

        assert benchmark(pair) == MSG
