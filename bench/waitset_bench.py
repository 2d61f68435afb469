"""Wake latency of the WaitSet and the asyncio path, against single waits and peers.

    python bench/waitset_bench.py [--n 2000] [--rounds 3]

A child process echoes: it waits on state A (st.wait) and writes state B. The parent writes
A and waits for B in one of these ways, and the round trip is timed (median of n, best round):

  single      B.wait()                                       (the baseline)
  waitset16   ws.wait() over B and 15 idle states            (target <= 1.5x single)
  aio         await B.wait_async()                           (target <= 2x thread+loop)
  thread+loop a thread blocked in B.wait() hands the result to the loop with
              call_soon_threadsafe (what asyncio code does without wait_async)
  socketpair  asyncio over a socketpair to an echoing child (the asyncio peer)
  zmq-poller  a pyzmq Poller over two PAIR sockets to an echoing child (if pyzmq is installed)

Figures are noisy on a shared VM: the load average is printed with them.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid

import sharedstate as ss

HERE = os.path.dirname(os.path.abspath(__file__))


def echo_child(a_name: str, b_name: str) -> None:
    a = ss.SharedState.open(a_name)
    b = ss.SharedState.open(b_name)
    v = a.version
    print("ready", flush=True)
    while True:
        try:
            v = a.wait(since=v, timeout=30)
        except TimeoutError:
            return
        if a.read().x < 0:
            return
        b.write(x=a.read().x)


def socket_child(fd: int) -> None:
    s = socket.socket(fileno=fd)
    while True:
        d = s.recv(64)
        if not d:
            return
        s.sendall(d)


def zmq_child(addr: str) -> None:
    import zmq

    ctx = zmq.Context()
    s = ctx.socket(zmq.PAIR)
    s.connect(addr)
    while True:
        d = s.recv()
        if d == b"stop":
            return
        s.send(d)


def rtt_states(kind: str, n: int) -> float:
    tag = uuid.uuid4().hex[:8]
    a = ss.SharedState.create(f"wsb-a-{tag}", ss.CONTROLLER)
    b = ss.SharedState.create(f"wsb-b-{tag}", ss.CONTROLLER)
    idle = [ss.SharedState.create(f"wsb-i{i}-{tag}", ss.CONTROLLER) for i in range(15)] if kind == "waitset16" else []
    p = subprocess.Popen([sys.executable, __file__, "--child", a.name, b.name], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    samples = []
    try:
        if kind == "single":
            v = b.version
            for i in range(1, n + 1):
                t0 = time.perf_counter_ns()
                a.write(x=i)
                v = b.wait(since=v, timeout=10)
                samples.append(time.perf_counter_ns() - t0)
        elif kind == "waitset16":
            ws = ss.WaitSet()
            for s in idle[:8]:
                ws.add(s)
            ws.add(b)
            for s in idle[8:]:
                ws.add(s)
            for i in range(1, n + 1):
                t0 = time.perf_counter_ns()
                a.write(x=i)
                r = ws.wait(timeout=10)
                samples.append(time.perf_counter_ns() - t0)
                assert r == [b]
        elif kind == "aio":
            async def main() -> None:
                v = b.version
                for i in range(1, n + 1):
                    t0 = time.perf_counter_ns()
                    a.write(x=i)
                    v = await b.wait_async(since=v, timeout=10)
                    samples.append(time.perf_counter_ns() - t0)
            asyncio.run(main())
        elif kind == "thread+loop":
            # One persistent worker thread blocked in st.wait(), as asyncio code without wait_async would do.
            async def main_persistent() -> None:
                loop = asyncio.get_running_loop()
                req: list = []
                go = threading.Semaphore(0)
                state = {"v": b.version}

                def worker() -> None:
                    while True:
                        go.acquire()
                        if not req:
                            return
                        fut = req.pop()
                        r = b.wait(since=state["v"], timeout=10)
                        state["v"] = r
                        loop.call_soon_threadsafe(fut.set_result, r)
                th = threading.Thread(target=worker)
                th.start()
                for i in range(1, n + 1):
                    fut = loop.create_future()
                    t0 = time.perf_counter_ns()
                    req.append(fut)
                    go.release()
                    a.write(x=i)
                    await fut
                    samples.append(time.perf_counter_ns() - t0)
                go.release()
                th.join()
            asyncio.run(main_persistent())
        return statistics.median(samples) / 1000.0
    finally:
        a.write(x=-1)
        p.wait(timeout=30)
        for s in [a, b, *idle]:
            s.close()


def rtt_socketpair(n: int) -> float:
    x, y = socket.socketpair()
    p = subprocess.Popen([sys.executable, __file__, "--sockchild", str(y.fileno())], pass_fds=[y.fileno()])
    y.close()
    samples = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        x.setblocking(False)
        for _ in range(n):
            t0 = time.perf_counter_ns()
            await loop.sock_sendall(x, b"ping")
            await loop.sock_recv(x, 64)
            samples.append(time.perf_counter_ns() - t0)
    asyncio.run(main())
    x.close()
    p.wait(timeout=30)
    return statistics.median(samples) / 1000.0


def rtt_zmq(n: int) -> float | None:
    try:
        import zmq
    except ImportError:
        return None
    ctx = zmq.Context()
    s = ctx.socket(zmq.PAIR)
    other = ctx.socket(zmq.PAIR)  # a second, idle socket: the Poller watches two
    addr = f"ipc:///tmp/wsb-{uuid.uuid4().hex[:8]}"
    s.bind(addr)
    other.bind(addr + "-idle")
    p = subprocess.Popen([sys.executable, __file__, "--zmqchild", addr])
    poller = zmq.Poller()
    poller.register(s, zmq.POLLIN)
    poller.register(other, zmq.POLLIN)
    s.send(b"warm")
    s.recv()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        s.send(b"ping")
        while s not in dict(poller.poll(10000)):
            pass
        s.recv()
        samples.append(time.perf_counter_ns() - t0)
    s.send(b"stop")
    p.wait(timeout=30)
    s.close(0)
    other.close(0)
    ctx.term()
    return statistics.median(samples) / 1000.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", nargs=2)
    ap.add_argument("--sockchild", type=int)
    ap.add_argument("--zmqchild")
    args = ap.parse_args(argv)
    if args.child:
        echo_child(*args.child)
        return 0
    if args.sockchild is not None:
        socket_child(args.sockchild)
        return 0
    if args.zmqchild:
        zmq_child(args.zmqchild)
        return 0
    r = run(args.n, args.rounds)
    print(report(r, args.n, args.rounds))
    return 0


def run(n: int, rounds: int) -> dict:
    """Every variant `rounds` times; the best round's median (us) per variant, and the ratios."""
    res: dict = {}
    for _ in range(rounds):
        for kind in ("single", "waitset16", "aio", "thread+loop"):
            res.setdefault(kind, []).append(rtt_states(kind, n))
        res.setdefault("socketpair", []).append(rtt_socketpair(n))
        z = rtt_zmq(n)
        if z is not None:
            res.setdefault("zmq-poller", []).append(z)
    best = {k: min(v) for k, v in res.items()}
    return {"best_us": best, "loadavg": os.getloadavg(),
            "waitset16_over_single": best["waitset16"] / best["single"],
            "aio_over_thread_loop": best["aio"] / best["thread+loop"]}


def report(r: dict, n: int, rounds: int) -> str:
    lines = [f"load average {tuple(round(x, 1) for x in r['loadavg'])}  n={n} rounds={rounds}  "
             "(median round trip, best round, us)"]
    for k, v in r["best_us"].items():
        lines.append(f"  {k:12s} {v:8.1f}")
    r1, r2 = r["waitset16_over_single"], r["aio_over_thread_loop"]
    lines.append(f"waitset16 / single     = {r1:.2f}  (target <= 1.5) {'PASS' if r1 <= 1.5 else 'MISS'}")
    lines.append(f"aio / thread+loop      = {r2:.2f}  (target <= 2.0) {'PASS' if r2 <= 2.0 else 'MISS'}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
