"""The Zenoh bridge against raw zenoh-python, in one run (bench/compare.py --only bridge).

Two processes on loopback, each with its own Zenoh session (peer mode, explicit endpoints, no
scouting, Zenoh's shared-memory transport on), the same config for every mechanism:

- round trip, 16-byte state: raw zenoh (put -> the other side's subscriber puts back) vs the
  bridge (state written on A -> exported -> mirror on B -> B writes its reply state -> exported
  -> mirror on A) vs a plain Python TCP socket;
- one-way queue throughput, 64-byte messages: raw zenoh pub/sub (BLOCK) vs the bridge
  (local Queue on A -> export -> import -> local Queue on B, every message checked in order);
- 1 MiB frames, one way: raw zenoh with its shared-memory provider vs the bridge (Frames on A ->
  export -> import -> Frames on B), frames/s with the receiver holding each frame as numpy.

    python bench/bench_bridge.py             # prints a markdown table
    python bench/bench_bridge.py --quick
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import uuid
from typing import Any, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def zsession(listen: Optional[str], connect: Optional[str]) -> Any:
    # Zenoh's shared-memory transport on for every mechanism (the bridge's default is off): the
    # raw peer needs it, and the bridge is measured with the same config.
    import sharedstate as ss
    return ss.bridge.session(listen=[listen] if listen else [], connect=[connect] if connect else None,
                             shared_memory=True)


def pct(xs: List[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


# ------------------------------------------------------------------ roles (run in the child)
def role_raw_echo(port: int, tag: str) -> None:
    import zenoh
    s = zsession(None, f"tcp/127.0.0.1:{port}")
    pub = s.declare_publisher(f"bench/{tag}/pong", congestion_control=zenoh.CongestionControl.BLOCK, express=True)
    s.declare_subscriber(f"bench/{tag}/ping", lambda smp: pub.put(smp.payload))
    print("ready", flush=True)
    sys.stdin.read()
    s.close()


def role_bridge_echo(port: int, tag: str) -> None:
    import sharedstate as ss
    s = zsession(None, f"tcp/127.0.0.1:{port}")
    reply = ss.SharedState.create(f"bb-{tag}-reply", ss.CONTROLLER)
    ex = ss.bridge.export_state(f"bb-{tag}-reply", f"bench/{tag}/reply", s, poll=0.05)
    im = ss.bridge.import_state(f"bench/{tag}/ask", f"bb-{tag}-askm", s)
    m = ss.SharedState.open(f"bb-{tag}-askm")
    print("ready", flush=True)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    v = m.version
    while not stop.is_set():
        try:
            v = m.wait(since=v, timeout=0.2)
        except TimeoutError:
            continue
        reply.write(x=m.x)
    im.close()
    ex.close()
    m.close()
    reply.close()
    s.close()


def role_bridge_direct_echo(port: int, tag: str) -> None:
    """The echo through the bridge's direct calls: the import's on_update (Zenoh's thread, once
    the value is in the mirror) answers through the reply export's write(), which sends from
    that thread: no wake-up in this process, as raw zenoh's echo callback."""
    import sharedstate as ss
    s = zsession(None, f"tcp/127.0.0.1:{port}")
    reply = ss.SharedState.create(f"bb-{tag}-dreply", ss.CONTROLLER)
    ex = ss.bridge.export_state(f"bb-{tag}-dreply", f"bench/{tag}/dreply", s, poll=0.05)
    im = ss.bridge.import_state(f"bench/{tag}/dask", f"bb-{tag}-daskm", s,
                                on_update=lambda m: ex.write(x=m.x))
    print("ready", flush=True)
    sys.stdin.read()
    im.close()
    ex.close()
    reply.close()
    s.close()


def role_tcp_echo(port: int, tag: str) -> None:
    c = socket.create_connection(("127.0.0.1", port))
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    print("ready", flush=True)
    while True:
        b = c.recv(16)
        if not b:
            break
        c.sendall(b)


def role_raw_sink(port: int, tag: str, n: int) -> None:
    s = zsession(None, f"tcp/127.0.0.1:{port}")
    state = {"count": 0, "last": 0.0}
    done = threading.Event()

    def cb(smp: Any) -> None:
        state["count"] += 1
        state["last"] = time.time()
        if state["count"] == n:
            done.set()
    s.declare_subscriber(f"bench/{tag}/tp", cb)
    print("ready", flush=True)
    _until_done_or_idle(done, state)
    print(json.dumps({"got": state["count"], "t": state["last"]}), flush=True)
    s.close()


def _until_done_or_idle(done: threading.Event, state: Dict[str, Any], idle: float = 2.0) -> None:
    """Until every message came, or none for ``idle`` seconds once some did (then count what came)."""
    t0 = time.time()
    while not done.wait(0.1):
        last = state["last"] or t0
        if time.time() - last > (idle if state["last"] else 60):
            return


def role_bridge_sink(port: int, tag: str, n: int) -> None:
    import sharedstate as ss
    s = zsession(None, f"tcp/127.0.0.1:{port}")
    im = ss.bridge.import_queue(f"bench/{tag}/q", f"bb-{tag}-qm", s)
    q = ss.Queue.open(f"bb-{tag}-qm")
    print("ready", flush=True)
    got = 0
    deadline = time.monotonic() + 120
    while got < n and time.monotonic() < deadline:
        try:
            q.get(timeout=1.0)
        except TimeoutError:
            continue
        got += 1
    print(json.dumps({"got": got, "t": time.time()}), flush=True)
    q.close()
    im.close()
    s.close()


def role_raw_frames_sink(port: int, tag: str, n: int) -> None:
    import numpy as np
    s = zsession(None, f"tcp/127.0.0.1:{port}")
    state = {"count": 0, "last": 0.0}
    done = threading.Event()

    def cb(smp: Any) -> None:
        a = np.frombuffer(smp.payload.to_bytes(), np.uint8)  # the receiver holds it as numpy
        if a.size:
            state["count"] += 1
            state["last"] = time.time()
        if state["count"] == n:
            done.set()
    s.declare_subscriber(f"bench/{tag}/fr", cb)
    print("ready", flush=True)
    _until_done_or_idle(done, state)
    print(json.dumps({"got": state["count"], "t": state["last"]}), flush=True)
    s.close()


def role_bridge_frames_sink_wire(port: int, tag: str, n: int) -> None:
    """As role_bridge_frames_sink, with whole frames through Zenoh even on the same machine."""
    role_bridge_frames_sink(port, tag, n, same_host=False)


def role_bridge_frames_sink(port: int, tag: str, n: int, same_host: bool = True) -> None:
    import sharedstate as ss
    s = zsession(None, f"tcp/127.0.0.1:{port}")
    im = ss.bridge.import_frames(f"bench/{tag}/frames", f"bb-{tag}-fm", s, same_host=same_host)
    if im.same_host != same_host:
        raise RuntimeError(f"the importer's same_host is {im.same_host}, not {same_host}")
    fr = ss.Frames.open(f"bb-{tag}-fm")
    print("ready", flush=True)
    v = fr.version
    got, last = 0, 0.0
    deadline = time.monotonic() + 120
    # Latest-value: the mirror may skip frames the source published faster than the link took
    # them, so "all n came" is not the end: no new frame for 2 s once some came is.
    while got < n and time.monotonic() < deadline:
        try:
            nv = fr.wait(since=v, timeout=2.0 if got else 60.0)
        except TimeoutError:
            break
        with fr.latest() as a:
            if a.size:
                got += int(nv - v)
                last = time.time()
        del a
        v = nv
    print(json.dumps({"got": got, "t": last}), flush=True)
    fr.close()
    im.close()
    s.close()


def role_frames_source(port: int, tag: str, n: int) -> None:
    """The game: 1 MiB frames into local Frames at ``n`` Hz, in its own process as a game is,
    until stdin closes."""
    import numpy as np
    import sharedstate as ss
    fr = ss.Frames.open(f"bb-{tag}-f")
    frame = np.full(fr.shape, 7, fr.dtype)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    print("ready", flush=True)
    period, t = 1.0 / n, time.monotonic()
    while not stop.is_set():
        fr.publish(frame)
        t += period
        d = t - time.monotonic()
        if d > 0:
            time.sleep(d)
    fr.close()


# ------------------------------------------------------------------ the parent
class Child:
    def __init__(self, role: str, port: int, tag: str, *extra: str) -> None:
        self.p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--role", role, "--port", str(port),
                                   "--tag", tag, *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.p.stdout is not None
        line = self.p.stdout.readline()
        if "ready" not in line:
            raise RuntimeError(f"{role} did not start: {line!r}")

    def result(self) -> Dict[str, Any]:
        assert self.p.stdout is not None
        return dict(json.loads(self.p.stdout.readline()))

    def close(self) -> None:
        if self.p.stdin:
            try:
                self.p.stdin.close()
            except OSError:
                pass
        try:
            self.p.wait(20)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


class RtRaw:
    """Raw zenoh: put -> the echo's subscriber puts back -> our subscriber sets an Event."""

    def __init__(self) -> None:
        import zenoh
        port, tag = free_port(), uuid.uuid4().hex[:8]
        self.s = zsession(f"tcp/127.0.0.1:{port}", None)
        self.got = threading.Event()
        self.s.declare_subscriber(f"bench/{tag}/pong", lambda smp: self.got.set())
        self.pub = self.s.declare_publisher(f"bench/{tag}/ping", congestion_control=zenoh.CongestionControl.BLOCK,
                                            express=True)
        self.ch = Child("raw_echo", port, tag)
        while not self.pub.matching_status.matching:
            time.sleep(0.01)
        self.payload = bytes(16)
        for _ in range(100):  # until the echo's reply route exists too (its puts are dropped before)
            self.got.clear()
            self.pub.put(self.payload)
            if self.got.wait(0.2):
                break

    def one(self) -> float:
        self.got.clear()
        t0 = time.perf_counter()
        self.pub.put(self.payload)
        if not self.got.wait(5):
            raise RuntimeError("raw zenoh echo lost a message")
        return (time.perf_counter() - t0) * 1e6

    def close(self) -> None:
        self.ch.close()
        self.s.close()


class RtBridge:
    """The bridge: ask written on A -> exported -> mirror on B -> B writes its reply -> exported
    -> mirror on A, which our wait() sees (the library's waits on both sides, default spin).
    direct: the ask is written through the export's write() (sent from this thread) and the echo
    answers from its import's on_update (role_bridge_direct_echo): no thread wake-up but the
    last, which our wait() has as raw zenoh's Event has."""

    def __init__(self, direct: bool = False) -> None:
        import sharedstate as ss
        port, tag = free_port(), uuid.uuid4().hex[:8]
        d = "d" if direct else ""
        self.s = zsession(f"tcp/127.0.0.1:{port}", None)
        self.ask = ss.SharedState.create(f"bb-{tag}-{d}ask", ss.CONTROLLER)
        self.ex = ss.bridge.export_state(f"bb-{tag}-{d}ask", f"bench/{tag}/{d}ask", self.s, poll=0.05)
        self.ch = Child("bridge_direct_echo" if direct else "bridge_echo", port, tag)
        self.im = ss.bridge.import_state(f"bench/{tag}/{d}reply", f"bb-{tag}-{d}replym", self.s)
        self.m = ss.SharedState.open(f"bb-{tag}-{d}replym")
        self.write = self.ex.write if direct else self.ask.write
        self.i = 0

    def one(self) -> float:
        self.i += 1
        i, m = self.i, self.m
        t0 = time.perf_counter()
        self.write(x=i)
        deadline = time.monotonic() + 5
        v = m.version
        while m.x != i:
            if time.monotonic() > deadline:
                raise RuntimeError(f"bridged echo lost value {i}")
            try:
                v = m.wait(since=v, timeout=1.0)
            except TimeoutError:
                pass
        return (time.perf_counter() - t0) * 1e6

    def close(self) -> None:
        self.ch.close()
        self.im.close()
        self.m.close()
        self.ex.close()
        self.ask.close()
        self.s.close()


class RtTcp:
    """A plain Python TCP socket echo (TCP_NODELAY)."""

    def __init__(self) -> None:
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.ch = Child("tcp_echo", self.srv.getsockname()[1], "tcp")
        self.c, _ = self.srv.accept()
        self.c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.b = bytes(16)

    def one(self) -> float:
        t0 = time.perf_counter()
        self.c.sendall(self.b)
        got = 0
        while got < 16:
            got += len(self.c.recv(16 - got))
        return (time.perf_counter() - t0) * 1e6

    def close(self) -> None:
        self.c.close()
        self.srv.close()
        self.ch.close()


# Cyclone DDS on loopback only: unicast discovery to 127.0.0.1, no multicast (as the zenoh peers)
_DDS_URI = ("<CycloneDDS><Domain><General><Interfaces><NetworkInterface name='lo'/></Interfaces>"
            "<AllowMulticast>false</AllowMulticast></General><Discovery><ParticipantIndex>auto</ParticipantIndex>"
            "<Peers><Peer address='127.0.0.1'/></Peers></Discovery></Domain></CycloneDDS>")


def _dds(domain: int, topic_in: str, topic_out: str) -> Any:
    """A participant with a reliable KeepLast(1) reader of ``topic_in`` (and its waitset) and
    writer of ``topic_out``: the state-like QoS a DDS user would pick for a controller state."""
    os.environ["CYCLONEDDS_URI"] = _DDS_URI
    from dataclasses import dataclass

    import cyclonedds.idl.types as ddst  # type: ignore[import-not-found,unused-ignore]
    from cyclonedds.core import InstanceState, Policy, Qos, ReadCondition, SampleState, ViewState, WaitSet  # type: ignore[import-not-found,unused-ignore]
    from cyclonedds.domain import DomainParticipant  # type: ignore[import-not-found,unused-ignore]
    from cyclonedds.idl import IdlStruct  # type: ignore[import-not-found,unused-ignore]
    from cyclonedds.pub import DataWriter  # type: ignore[import-not-found,unused-ignore]
    from cyclonedds.sub import DataReader  # type: ignore[import-not-found,unused-ignore]
    from cyclonedds.topic import Topic  # type: ignore[import-not-found,unused-ignore]
    from cyclonedds.util import duration  # type: ignore[import-not-found,unused-ignore]

    # built with real annotation objects: this module's annotations are strings (from
    # __future__ import annotations), which Cyclone's type resolver does not take
    import types as _types
    fields = {"seq": ddst.uint64, "x": ddst.int32, "y": ddst.int32}  # 16 bytes, as the state
    Ctl: Any = dataclass(_types.new_class("Ctl", (IdlStruct,), {"typename": "sharedstate_bench::Ctl"},
                                     lambda ns: ns.update(__annotations__=fields)))

    qos = Qos(Policy.Reliability.Reliable(duration(seconds=1)), Policy.History.KeepLast(1))
    dp = DomainParticipant(domain)
    r = DataReader(dp, Topic(dp, topic_in, Ctl, qos=qos), qos=qos)
    w = DataWriter(dp, Topic(dp, topic_out, Ctl, qos=qos), qos=qos)
    ws = WaitSet(dp)
    ws.attach(ReadCondition(r, SampleState.NotRead | ViewState.Any | InstanceState.Any))
    return dp, r, w, ws, Ctl, duration


def role_dds_echo(port: int, tag: str) -> None:
    dp, r, w, ws, Ctl, duration = _dds(port, "ping", "pong")
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    print("ready", flush=True)
    while not stop.is_set():
        ws.wait(duration(milliseconds=200))
        for smp in r.take():
            w.write(Ctl(smp.seq, smp.x, smp.y))


class RtDds:
    """Cyclone DDS from Python: write -> the echo's waitset takes and writes back -> our waitset."""

    def __init__(self) -> None:
        import random
        domain = random.randrange(1, 230)
        self.ch = Child("dds_echo", domain, "dds")
        self.dp, self.r, self.w, self.ws, self.Ctl, self.duration = _dds(domain, "pong", "ping")
        self.i = 0
        deadline = time.monotonic() + 20
        while True:  # until discovery matched both ways
            if time.monotonic() > deadline:
                raise RuntimeError("Cyclone DDS echo never answered")
            if self._ask(0.1) is not None:
                break

    def _ask(self, timeout: float) -> Optional[float]:
        self.i += 1
        i = self.i
        t0 = time.perf_counter()
        self.w.write(self.Ctl(i, 1, 2))
        end = t0 + timeout
        while True:
            self.ws.wait(self.duration(seconds=max(0.0, end - time.perf_counter())))
            if any(smp.seq == i for smp in self.r.take()):
                return (time.perf_counter() - t0) * 1e6
            if time.perf_counter() > end:
                return None

    def one(self) -> float:
        x = self._ask(5.0)
        if x is None:
            raise RuntimeError("Cyclone DDS echo lost a value")
        return x

    def close(self) -> None:
        self.ch.close()


def _have_cyclonedds() -> bool:
    try:
        import cyclonedds  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        return False
    return True


def round_trips(rounds: int, per_round: int, warm: int, block: int = 30) -> Dict[str, Any]:
    """Raw zenoh, the bridge and TCP set up side by side and measured in alternating rounds of
    ``per_round`` round trips (10: a few ms per round, so every mechanism sees the same stretch
    of this VM, whose wake latency drifts by 2x within a second; with rounds of 100 the per-round
    ratio spread over 0.6-2.4). Returns every sample per mechanism and the ratio bridge p50 / raw
    p50 per block of ``block`` rounds (the spread of the figure within the run)."""
    mechs: Dict[str, Any] = {}
    try:
        kinds: List[Tuple[str, Any]] = [("raw_rt", RtRaw), ("bridge_rt", RtBridge), ("bridge_direct_rt", lambda: RtBridge(direct=True)),
                                        ("tcp_rt", RtTcp)]
        if _have_cyclonedds():
            kinds.append(("dds_rt", RtDds))
        for k, cls in kinds:
            mechs[k] = cls()
        for m in mechs.values():
            for _ in range(warm):
                m.one()
        xs: Dict[str, List[float]] = {k: [] for k in mechs}
        for _ in range(rounds):
            for k, m in mechs.items():
                xs[k] += [m.one() for _ in range(per_round)]
        step = block * per_round  # samples per block, the same stretch for every mechanism
        ratios = {k: [statistics.median(xs[k][i:i + step]) / statistics.median(xs["raw_rt"][i:i + step])
                      for i in range(0, len(xs["raw_rt"]), step)] for k in ("bridge_rt", "bridge_direct_rt")}
        return {"samples": xs, "ratios": ratios, "block": step}
    finally:
        for m in mechs.values():
            m.close()


def tp_raw(n: int, size: int) -> float:
    import zenoh
    port, tag = free_port(), uuid.uuid4().hex[:8]
    s = zsession(f"tcp/127.0.0.1:{port}", None)
    pub = s.declare_publisher(f"bench/{tag}/tp", congestion_control=zenoh.CongestionControl.BLOCK)
    ch = Child("raw_sink", port, tag, "--n", str(n))
    try:
        while not pub.matching_status.matching:
            time.sleep(0.01)
        msg = bytes(size)
        t0 = time.time()
        for _ in range(n):
            pub.put(msg)
        r = ch.result()
        return float(r["got"]) / (r["t"] - t0)
    finally:
        ch.close()
        s.close()


def tp_bridge(n: int, size: int) -> float:
    import sharedstate as ss
    port, tag = free_port(), uuid.uuid4().hex[:8]
    s = zsession(f"tcp/127.0.0.1:{port}", None)
    q = ss.Queue.create(f"bb-{tag}-q", capacity=1 << 22)
    ex = ss.bridge.export_queue(f"bb-{tag}-q", f"bench/{tag}/q", s)
    ch = Child("bridge_sink", port, tag, "--n", str(n))
    try:
        msg = bytes(size)
        t0 = time.time()
        for _ in range(n):
            q.put(msg, timeout=30)
        r = ch.result()
        if r["got"] != n:
            raise RuntimeError(f"bridge delivered {r['got']} of {n}")
        return float(n) / (r["t"] - t0)
    finally:
        ch.close()
        ex.close()
        q.close()
        s.close()


def fr_raw_shm(seconds: float, nbytes: int, shm: bool = True) -> float:
    """Frames/s the receiver holds as numpy while the sender saturates the link for ``seconds``;
    ``shm=False``: each frame put as plain bytes, through the socket (what crosses machines)."""
    n = 1 << 40
    import zenoh
    import numpy as np
    port, tag = free_port(), uuid.uuid4().hex[:8]
    s = zsession(f"tcp/127.0.0.1:{port}", None)
    pub = s.declare_publisher(f"bench/{tag}/fr", congestion_control=zenoh.CongestionControl.BLOCK)
    provider = zenoh.shm.ShmProvider.default_backend(nbytes * 8)
    ch = Child("raw_frames_sink", port, tag, "--n", str(n))
    try:
        while not pub.matching_status.matching:
            time.sleep(0.01)
        frame = np.full(nbytes, 7, np.uint8).tobytes()
        t0 = time.time()
        while time.time() - t0 < seconds:  # BLOCK: put() waits when the subscriber is behind
            if not shm:
                pub.put(frame)
                continue
            buf = provider.alloc(nbytes, policy=zenoh.shm.BlockOn(zenoh.shm.GarbageCollect()))
            buf[0:nbytes] = frame  # numpy costs one copy on each side (no buffer protocol)
            pub.put(buf)
        r = ch.result()
        return float(r["got"]) / (r["t"] - t0)
    finally:
        ch.close()
        s.close()


def fr_bridge(seconds: float, nbytes: int, rate: float, same_host: bool = True, shm: bool = True) -> float:
    """Frames/s the mirror's reader holds while the game publishes ``rate`` frames/s for ``seconds``
    (``shm=False``: the exporter sends plain bytes, through the socket)."""
    n = 1 << 40
    import numpy as np
    import sharedstate as ss
    port, tag = free_port(), uuid.uuid4().hex[:8]
    s = zsession(f"tcp/127.0.0.1:{port}", None)
    fr = ss.Frames.create(f"bb-{tag}-f", (nbytes,), np.uint8)
    ex = ss.bridge.export_frames(f"bb-{tag}-f", f"bench/{tag}/frames", s, poll=0.05, shared_memory=shm)
    ch = Child("bridge_frames_sink" if same_host else "bridge_frames_sink_wire", port, tag, "--n", str(n))
    src = None
    try:
        # Latest-value: a game process publishes at ``rate`` (the round's raw zenoh rate: the
        # game offers what the raw link carried, so the ratio is the share of it the bridge
        # delivers; a faster game only burns the 2 vCPUs on frames nobody can take, a slower one
        # caps the bridge); the receiver counts the frames it held (the ones the link had no
        # time for are skipped, not queued). The clock starts once the game process is ready
        # (it publishes right after saying so), as raw's starts once its link is up: the game's
        # interpreter start-up (0.3-0.5 s here) is no part of the link's rate.
        src = Child("frames_source", port, tag, "--n", str(max(1, round(rate))))
        t0 = time.time()
        time.sleep(seconds)
        src.close()
        src = None
        r = ch.result()
        return float(r["got"]) / (r["t"] - t0)
    finally:
        if src is not None:
            src.close()
        ch.close()
        ex.close()
        fr.close()
        s.close()


def peer_leftovers() -> set:
    """The /dev/shm files peers leave at exit: Zenoh's shared-memory segments (zenoh#2787, and
    the bridge's make_config) and iceoryx2's global management file."""
    d = "/dev/shm"
    return {f for f in os.listdir(d) if f.endswith(".zenoh") or f.startswith("iox2_")} if os.path.isdir(d) else set()


def remove_new_leftovers(before: set) -> None:
    """Remove the peers' files that appeared since ``before`` (their processes have exited)."""
    for f in peer_leftovers() - before:
        try:
            os.unlink(os.path.join("/dev/shm", f))
        except OSError:
            pass


def run_bridge(quick: bool = False) -> Dict[str, Any]:
    """One run of every bridge figure; ratios pair figures taken in this run. The files
    Zenoh's shared-memory peers leave in /dev/shm during the run are removed at its end."""
    before = peer_leftovers()
    try:
        return _run_bridge(quick)
    finally:
        remove_new_leftovers(before)


def _run_bridge(quick: bool) -> Dict[str, Any]:
    try:
        import zenoh  # noqa: F401
    except ImportError:
        return {"skipped": "eclipse-zenoh is not installed (pip install 'sharedstate[zenoh]')"}
    n, warm = (500, 50) if quick else (3000, 200)
    res: Dict[str, Any] = {"rows": {}}
    rows = res["rows"]
    rt = round_trips(n // 10, 10, warm)
    for key, label in (("raw_rt", "raw zenoh put/subscribe round trip"),
                       ("bridge_rt", "**bridged state round trip (A -> mirror on B -> reply -> mirror on A)**"),
                       ("bridge_direct_rt", "**the same through export.write() and import on_update (no thread wake-up)**"),
                       ("tcp_rt", "plain Python TCP socket round trip"),
                       ("dds_rt", "Cyclone DDS (Python) round trip, reliable, KeepLast(1)")):
        if key not in rt["samples"]:
            rows[key] = {"label": label, "skipped": "cyclonedds is not installed (pip install cyclonedds)", "unit": "µs"}
            continue
        xs = rt["samples"][key]
        rows[key] = {"label": label, "p50": statistics.median(xs), "p99": pct(xs, 99), "unit": "µs"}
    tn = 20000 if quick else 200000
    rows["raw_tp"] = {"label": "raw zenoh pub/sub, 64 B, BLOCK", "rate": tp_raw(tn, 64), "unit": "msg/s"}
    rows["bridge_tp"] = {"label": "**Queue over the bridge, 64 B, every message in order**",
                         "rate": tp_bridge(tn, 64), "unit": "msg/s"}
    # frames: alternating rounds (raw, bridge), the ratio per round (the VM drifts, as above)
    fr_rounds, fn_ = (1, 1.0) if quick else (3, 1.5)
    fr: Dict[str, List[float]] = {k: [] for k in ("raw_fr", "bridge_fr", "bridge_wire_fr", "raw_tcp_fr", "bridge_tcp_fr")}
    for _ in range(fr_rounds):
        fr["raw_fr"].append(fr_raw_shm(fn_, 1 << 20))
        fr["bridge_fr"].append(fr_bridge(fn_, 1 << 20, fr["raw_fr"][-1]))
        fr["bridge_wire_fr"].append(fr_bridge(fn_, 1 << 20, fr["raw_fr"][-1], same_host=False))
        # the cross-machine case: no shared memory anywhere, every frame through the socket
        fr["raw_tcp_fr"].append(fr_raw_shm(fn_, 1 << 20, shm=False))
        fr["bridge_tcp_fr"].append(fr_bridge(fn_, 1 << 20, fr["raw_tcp_fr"][-1], same_host=False, shm=False))
    rows["raw_fr"] = {"label": "raw zenoh + shared memory, 1 MiB frames", "rate": statistics.median(fr["raw_fr"]),
                      "unit": "frames/s"}
    rows["bridge_fr"] = {"label": "**Frames over the bridge, 1 MiB (the game publishing at the round's raw rate)**",
                         "rate": statistics.median(fr["bridge_fr"]), "unit": "frames/s"}
    rows["bridge_wire_fr"] = {"label": "Frames over the bridge, 1 MiB, whole frames through Zenoh shm (same_host=False)",
                              "rate": statistics.median(fr["bridge_wire_fr"]), "unit": "frames/s"}
    rows["raw_tcp_fr"] = {"label": "raw zenoh, 1 MiB frames as plain bytes (through the socket, as across machines)",
                          "rate": statistics.median(fr["raw_tcp_fr"]), "unit": "frames/s"}
    rows["bridge_tcp_fr"] = {"label": "Frames over the bridge, plain bytes through the socket (the game at that raw rate)",
                             "rate": statistics.median(fr["bridge_tcp_fr"]), "unit": "frames/s"}
    fr_ratio = statistics.median(b / r for r, b in zip(fr["raw_fr"], fr["bridge_fr"]))
    wire_ratio = statistics.median(b / r for r, b in zip(fr["raw_fr"], fr["bridge_wire_fr"]))
    tcp_ratio = statistics.median(b / r for r, b in zip(fr["raw_tcp_fr"], fr["bridge_tcp_fr"]))
    res["round_ratios"], res["round_block"] = rt["ratios"], rt["block"]
    t = res["targets"] = []
    raw_p50 = rows["raw_rt"]["p50"]
    t.append(("bridged round trip / raw zenoh round trip (p50s over the interleaved rounds)",
              rows["bridge_rt"]["p50"] / raw_p50, "<= 1.2"))
    t.append(("the same through export.write() and on_update / raw zenoh",
              rows["bridge_direct_rt"]["p50"] / raw_p50, "<= 1.2"))
    t.append(("Queue over the bridge / raw zenoh pub/sub (msg/s)", rows["bridge_tp"]["rate"] / rows["raw_tp"]["rate"],
              ">= 0.8"))
    t.append(("1 MiB Frames over the bridge / raw zenoh shm (frames/s, median over rounds)", fr_ratio, ">= 0.8"))
    t.append(("the same, whole frames through Zenoh (same_host=False): for a remote importer", wire_ratio, ">= 0.8"))
    t.append(("(info) through the socket, no shared memory: bridge / raw zenoh plain bytes", tcp_ratio, ">= 0.8"))
    return res


def markdown(res: Dict[str, Any]) -> List[str]:
    L = ["## The Zenoh bridge vs raw zenoh-python (two processes, loopback)", ""]
    if "skipped" in res:
        return L + [f"skipped: {res['skipped']}", ""]
    L += ["| mechanism | p50 | p99 / rate |", "| --- | ---: | ---: |"]
    for r in res["rows"].values():
        if "skipped" in r:
            L.append(f"| {r['label']} | skipped: {r['skipped']} | |")
        elif r["unit"] == "µs":
            L.append(f"| {r['label']} | {r['p50']:.1f} µs | {r['p99']:.1f} µs |")
        else:
            L.append(f"| {r['label']} | | {r['rate']:,.0f} {r['unit']} |")
    L += ["", "| target | measured | limit | status |", "| --- | ---: | ---: | --- |"]
    for name, v, lim in res["targets"]:
        if name.startswith("(info)"):  # beside the targets, not one of them
            L.append(f"| {name} | {v:.2f} | – | info |")
            continue
        op, x = lim.split()
        ok = v <= float(x) if op == "<=" else v >= float(x)
        L.append(f"| {name} | {v:.2f} | {lim} | {'**PASS**' if ok else '**SHORT**'} |")
    rr = res.get("round_ratios") or {}
    if rr:
        L += ["", f"Round-trip ratio per block of {res.get('round_block', '?')} round trips (bridge p50 / raw p50): "
              + "; ".join(f"{k} {min(v):.2f}–{max(v):.2f}" for k, v in rr.items() if v)]
    return L + [""]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--role")
    ap.add_argument("--port", type=int)
    ap.add_argument("--tag")
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.role:
        fn = globals()[f"role_{a.role}"]
        fn(a.port, a.tag, a.n) if a.n else fn(a.port, a.tag)
        return 0
    res = run_bridge(a.quick)
    print("\n".join(markdown(res)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
