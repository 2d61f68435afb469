"""The mechanisms that bench/compare.py measures side by side: sharedstate and its peers.

Every peer is a small class. A peer whose package is missing (or whose sharedstate part is
not built yet) raises Skip("<reason>") from its constructor or ``open``; compare.py reports
it as "skipped: <reason>", it is never dropped.

Cross-process mechanisms run as a pair: the parent (pinned to one CPU) and a child forked
from it (pinned to another). The life of a pair, driven by ``harness.run_pair``:

    prepare()        parent, before the fork: anonymous resources (fds, shared memory)
    [fork]
    child_open()     child, after the parent said "go": opens its ends by name
    parent_open()    parent, after the fork (servers accept here)
    child_main(n)    child: echo n messages (round trip) or receive n (throughput)
    parent side      ping(i) closures (round trip) / send_all(n) (throughput)
    close()          both sides, best effort

Message sizes: 16 bytes for round trips, 64 bytes for throughput (../shared/PEERS.md).
"""
from __future__ import annotations

import ctypes
import os
import socket
import struct
import tempfile
import time
from multiprocessing import shared_memory

RT_MSG = b"r" * 16
TP_MSG = b"t" * 64
CTRL_FMT = "<ii???x"   # the 12-byte controller struct


class Skip(Exception):
    """The peer cannot run here; the message says why."""


def _import(mod: str):
    try:
        return __import__(mod)
    except Exception as e:  # ImportError, or a broken wheel
        raise Skip(f"{mod} not installed ({type(e).__name__}: {e})".splitlines()[0][:120])


def sharedstate():
    return _import("sharedstate")


def need_ss(attr: str):
    ss = sharedstate()
    if not hasattr(ss, attr):
        raise Skip(f"not available: sharedstate has no {attr} yet")
    return ss


def unique(tag: str) -> str:
    return f"sst-bench-{os.getpid()}-{tag}-{time.monotonic_ns() % 1000000}"


class Controller(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int32), ("y", ctypes.c_int32), ("is_open", ctypes.c_bool),
                ("is_running", ctypes.c_bool), ("is_pressing", ctypes.c_bool)]


class Msg64(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint8 * 64)]


class Msg16(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint8 * 16)]


def _close_shm(shm) -> None:
    """Close and unlink a SharedMemory even if views of it are still exported somewhere."""
    try:
        shm.close()
    except BufferError:
        pass
    try:
        shm.unlink()
    except FileNotFoundError:
        pass


def _spin_until(mv, idx, want, deadline_s=20.0):
    """Pure-Python spin on a shared word (the loop the spin-handoff peer measures)."""
    if mv[idx] == want:
        return
    n = 0
    while mv[idx] != want:
        n += 1
        if n & 0xFFFFF == 0 and time.monotonic() > deadline_s:
            raise TimeoutError("spin handoff: the other side stopped")


def _deadline(seconds: float = 20.0) -> float:
    return time.monotonic() + seconds


# ================================================================== round trips
class RoundTrip:
    """Base: a 16-byte message there and back. Subclasses fill the hooks."""
    name = "?"
    group = "peer"           # "sharedstate" for ours
    note = ""

    parent_first = True      # parent_open() before the child opens (False: servers that accept)

    def prepare(self): pass
    def child_open(self): pass
    def parent_open(self): pass
    def close(self): pass        # parent side: everything it made
    def child_close(self): pass  # child side: only what child_open made

    def child_main(self, n: int):
        raise NotImplementedError

    def make_ping(self):
        """A closure ping(i) doing one round trip from the parent."""
        raise NotImplementedError


class SpinHandoff(RoundTrip):
    name = "pure-Python shm spin handoff"
    note = "two 8-byte counters in multiprocessing.shared_memory, both sides busy-wait"

    def prepare(self):
        self.shm = shared_memory.SharedMemory(create=True, size=256)
        self.mv = self.shm.buf.cast("Q")   # [0]: parent->child, [16]: child->parent (own cache lines)
        self.mv[0] = 0
        self.mv[16] = 0

    def child_main(self, n):
        mv = self.mv
        dl = _deadline()
        for i in range(1, n + 1):
            _spin_until(mv, 0, i, dl)
            mv[16] = i

    def make_ping(self):
        mv = self.mv

        def ping(i):   # no deadline check here: the harness's SIGALRM stops a hang
            mv[0] = i
            while mv[16] != i:
                pass
        return ping

    def close(self):
        self.mv.release()
        _close_shm(self.shm)


class MpPipe(RoundTrip):
    name = "multiprocessing.Pipe"

    def prepare(self):
        import multiprocessing as mp
        self.a, self.b = mp.Pipe()

    def child_main(self, n):
        b = self.b
        for _ in range(n):
            b.send_bytes(b.recv_bytes())

    def make_ping(self):
        a = self.a
        send, recv = a.send_bytes, a.recv_bytes

        def ping(i):
            send(RT_MSG)
            recv()
        return ping

    def close(self):
        self.a.close(); self.b.close()


class SeqPacket(RoundTrip):
    name = "socketpair SOCK_SEQPACKET"

    def prepare(self):
        self.a, self.b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

    def child_main(self, n):
        b = self.b
        for _ in range(n):
            b.send(b.recv(256))

    def make_ping(self):
        send, recv = self.a.send, self.a.recv

        def ping(i):
            send(RT_MSG)
            recv(256)
        return ping

    def close(self):
        self.a.close(); self.b.close()


class OsPipe(RoundTrip):
    name = "os.pipe pair"

    def prepare(self):
        self.r1, self.w1 = os.pipe()   # parent -> child
        self.r2, self.w2 = os.pipe()   # child -> parent

    def child_main(self, n):
        r, w = self.r1, self.w2
        read, write = os.read, os.write
        for _ in range(n):
            write(w, read(r, 256))

    def make_ping(self):
        r, w = self.r2, self.w1
        read, write = os.read, os.write

        def ping(i):
            write(w, RT_MSG)
            read(r, 256)
        return ping

    def close(self):
        for fd in (self.r1, self.w1, self.r2, self.w2):
            try:
                os.close(fd)
            except OSError:
                pass


def _zmq_close(self, fname):
    for attr in ("ps", "cs"):
        s = getattr(self, attr, None)
        if s is not None:
            s.close(linger=0)
    for attr in ("pctx", "cctx"):
        c = getattr(self, attr, None)
        if c is not None:
            c.term()
    try:
        os.unlink(os.path.join(self.dir, fname))
    except OSError:
        pass
    try:
        os.rmdir(self.dir)
    except OSError:
        pass


class _ZmqIpc:
    """pyzmq over an ipc:// endpoint in a private temp dir: the child connects, the parent binds."""
    endpoint = child_type = parent_type = ""

    def __init__(self):
        self.zmq = _import("zmq")

    def prepare(self):
        self.dir = tempfile.mkdtemp(prefix="sst-bench-zmq-")
        self.addr = "ipc://" + os.path.join(self.dir, self.endpoint)

    def child_open(self):
        self.cctx = self.zmq.Context()
        self.cs = self.cctx.socket(getattr(self.zmq, self.child_type))
        self.cs.connect(self.addr)

    def parent_open(self):
        self.pctx = self.zmq.Context()
        self.ps = self.pctx.socket(getattr(self.zmq, self.parent_type))
        self.ps.bind(self.addr)

    def child_close(self):
        self.cs.close(linger=0)
        self.cctx.term()

    def close(self):
        _zmq_close(self, self.endpoint)


class ZmqPair(_ZmqIpc, RoundTrip):
    name = "pyzmq PAIR over ipc"
    endpoint, child_type, parent_type = "pair", "PAIR", "PAIR"

    def child_main(self, n):
        s = self.cs
        for _ in range(n):
            s.send(s.recv(copy=True), copy=True)

    def make_ping(self):
        send, recv = self.ps.send, self.ps.recv

        def ping(i):
            send(RT_MSG)
            recv()
        return ping



class PosixMQ(RoundTrip):
    name = "posix_ipc MessageQueue"

    def __init__(self):
        self.pi = _import("posix_ipc")

    def prepare(self):
        self.n1, self.n2 = "/" + unique("mq1"), "/" + unique("mq2")
        self.q1 = self.pi.MessageQueue(self.n1, self.pi.O_CREX, max_messages=8, max_message_size=256)
        self.q2 = self.pi.MessageQueue(self.n2, self.pi.O_CREX, max_messages=8, max_message_size=256)

    def child_main(self, n):
        r, w = self.q1.receive, self.q2.send
        for _ in range(n):
            w(r()[0])

    def make_ping(self):
        send, recv = self.q1.send, self.q2.receive

        def ping(i):
            send(RT_MSG)
            recv()
        return ping

    def close(self):
        for q in (self.q1, self.q2):
            try:
                q.close()
                q.unlink()
            except Exception:
                pass


class _Iox:
    """iceoryx2 setup shared by the round-trip and throughput peers."""

    def __init__(self):
        self.iox = _import("iceoryx2")
        try:
            self.iox.set_log_level(self.iox.LogLevel.Error)
        except Exception:
            pass

    def _service(self, node, name, payload, buffer=16):
        iox = self.iox
        b = node.service_builder(iox.ServiceName.new(name)).publish_subscribe(payload)
        b = b.enable_safe_overflow(False).subscriber_max_buffer_size(buffer).history_size(0)
        return b.open_or_create()

    def _publisher(self, svc):
        iox = self.iox
        pb = svc.publisher_builder()
        try:  # block the sender instead of dropping when the subscriber is behind
            pb = pb.backpressure_strategy(iox.BackpressureStrategy.RetryUntilDelivered)
        except Exception:
            pass
        return pb.create()


class IoxPubSub(RoundTrip, _Iox):
    name = "iceoryx2 pub/sub, busy-polling receive()"

    def __init__(self, event: bool = False):
        _Iox.__init__(self)
        self.event = event
        if event:
            self.name = "iceoryx2 pub/sub + Event wait"

    def prepare(self):
        self.s1, self.s2 = unique("iox1"), unique("iox2")
        self.e1, self.e2 = self.s1 + "-ev", self.s2 + "-ev"

    def _open(self, out_name, in_name, out_ev, in_ev):
        iox = self.iox
        self.node = iox.NodeBuilder.new().create(iox.ServiceType.Ipc)
        self.svc_out = self._service(self.node, out_name, Msg16)
        self.svc_in = self._service(self.node, in_name, Msg16)
        self.pub = self._publisher(self.svc_out)
        self.sub = self.svc_in.subscriber_builder().create()
        if self.event:
            self.ev_out = self.node.service_builder(iox.ServiceName.new(out_ev)).event().open_or_create()
            self.ev_in = self.node.service_builder(iox.ServiceName.new(in_ev)).event().open_or_create()
            self.notifier = self.ev_out.notifier_builder().create()
            self.listener = self.ev_in.listener_builder().create()

    def parent_open(self):
        self._open(self.s1, self.s2, self.e1, self.e2)

    def child_open(self):
        self._open(self.s2, self.s1, self.e2, self.e1)

    def _wait_connected(self):
        # A publisher only delivers to subscribers it knows of: refresh until the peer is seen.
        dl = time.monotonic() + 10
        while time.monotonic() < dl:
            try:
                self.pub.update_connections()
            except Exception:
                pass
            if self.svc_out.dynamic_config.number_of_subscribers > 0:
                return
            time.sleep(0.001)

    def child_main(self, n):
        self._wait_connected()
        sub, pub = self.sub, self.pub
        msg = Msg16()
        if self.event:
            lw, notify = self.listener.timed_wait, self.notifier.notify
            tmo = self.iox.Duration.from_secs(10)
            for _ in range(n):
                s = sub.receive()
                while s is None:
                    lw(tmo)
                    s = sub.receive()
                del s
                pub.send_copy(msg)
                notify()
        else:
            for _ in range(n):
                s = sub.receive()
                while s is None:
                    s = sub.receive()
                del s
                pub.send_copy(msg)

    def make_ping(self):
        self._wait_connected()
        sub, pub = self.sub, self.pub
        msg = Msg16()
        if self.event:
            lw, notify = self.listener.timed_wait, self.notifier.notify
            tmo = self.iox.Duration.from_secs(10)

            def ping(i):
                pub.send_copy(msg)
                notify()
                s = sub.receive()
                while s is None:
                    lw(tmo)
                    s = sub.receive()
        else:
            def ping(i):
                pub.send_copy(msg)
                s = sub.receive()
                while s is None:
                    s = sub.receive()
        return ping

    def close(self):
        for attr in ("listener", "notifier", "sub", "pub", "ev_in", "ev_out", "svc_in", "svc_out", "node"):
            if hasattr(self, attr):
                delattr(self, attr)

    child_close = close


class IoxPubSubEvent(IoxPubSub):
    name = "iceoryx2 pub/sub + Event wait"

    def __init__(self):
        IoxPubSub.__init__(self, event=True)


class SSState(RoundTrip):
    name = "sharedstate SharedState write -> wait -> reply"
    group = "sharedstate"
    note = "two SharedStates (one each way), wait(since=v) spins then parks"

    def __init__(self):
        self.ss = sharedstate()

    def prepare(self):
        ss = self.ss
        self.na, self.nb = unique("sta"), unique("stb")
        self.a = ss.SharedState.create(self.na, ss.CONTROLLER)   # parent -> child
        self.b = ss.SharedState.create(self.nb, ss.CONTROLLER)   # child -> parent

    def child_open(self):
        # Open by name: never use the objects inherited through fork.
        self.ca = self.ss.SharedState.open(self.na)
        self.cb = self.ss.SharedState.open(self.nb)

    def child_main(self, n):
        a, b = self.ca, self.cb
        va = a.version
        wait, write = a.wait, b.write
        for _ in range(n):
            va = wait(since=va, timeout=20)
            write(x=a.x)

    def make_ping(self):
        a, b = self.a, self.b
        box = [b.version]
        write, wait = a.write, b.wait

        def ping(i):
            write(x=i)
            box[0] = wait(since=box[0], timeout=20)
        return ping

    def child_close(self):
        self.ca.close()
        self.cb.close()

    def close(self):
        for attr in ("ca", "cb", "a", "b"):
            o = getattr(self, attr, None)
            if o is not None:
                o.close()


class SSPipe(RoundTrip):
    name = "sharedstate Pipe"
    group = "sharedstate"
    parent_first = False

    def __init__(self):
        self.ss = need_ss("PipeServer")
        need_ss("Pipe")

    def prepare(self):
        self.pname = unique("pipe")
        self.srv = self.ss.PipeServer(self.pname)

    def child_open(self):
        self.cli = self.ss.Pipe.connect(self.pname, timeout=10)

    def parent_open(self):
        self.conn = self.srv.accept(timeout=10)

    def child_main(self, n):
        c = self.cli
        send, recv = c.send, c.recv
        for _ in range(n):
            send(recv(timeout=20))

    def child_close(self):
        self.cli.close()

    def make_ping(self):
        send, recv = self.conn.send, self.conn.recv

        def ping(i):
            send(RT_MSG)
            recv(timeout=20)
        return ping

    def close(self):
        for attr in ("cli", "conn", "srv"):
            o = getattr(self, attr, None)
            if o is not None and hasattr(o, "close"):
                try:
                    o.close()
                except Exception:
                    pass


def _queue_open(ss, name):
    Q = ss.Queue
    if hasattr(Q, "open"):
        return Q.open(name)
    raise Skip("not available: sharedstate.Queue has no open()")


class SSQueue(RoundTrip):
    name = "sharedstate Queue (one each way)"
    group = "sharedstate"

    def __init__(self):
        self.ss = need_ss("Queue")

    def prepare(self):
        self.n1, self.n2 = unique("q1"), unique("q2")
        self.q1 = self.ss.Queue.create(self.n1, capacity=1 << 16)
        self.q2 = self.ss.Queue.create(self.n2, capacity=1 << 16)

    def child_open(self):
        self.c1 = _queue_open(self.ss, self.n1)
        self.c2 = _queue_open(self.ss, self.n2)

    def child_main(self, n):
        get, put = self.c1.get, self.c2.put
        for _ in range(n):
            put(get(timeout=20))

    def child_close(self):
        for o in (self.c1, self.c2):
            if hasattr(o, "close"):
                o.close()

    def make_ping(self):
        put, get = self.q1.put, self.q2.get

        def ping(i):
            put(RT_MSG)
            get(timeout=20)
        return ping

    def close(self):
        for attr in ("c1", "c2", "q1", "q2"):
            o = getattr(self, attr, None)
            if o is not None and hasattr(o, "close"):
                try:
                    o.close()
                except Exception:
                    pass


ROUND_TRIPS = [
    ("ss_state", SSState),
    ("ss_pipe", SSPipe),
    ("ss_queue", SSQueue),
    ("spin", SpinHandoff),
    ("mp_pipe", MpPipe),
    ("seqpacket", SeqPacket),
    ("os_pipe", OsPipe),
    ("zmq_pair", ZmqPair),
    ("posix_mq", PosixMQ),
    ("iox_poll", IoxPubSub),
    ("iox_event", IoxPubSubEvent),
]


# ================================================================== one-way throughput
class Throughput:
    """Base: n 64-byte messages one way; the child reports when it has them all."""
    name = "?"
    group = "peer"
    note = ""

    parent_first = True

    def prepare(self): pass
    def child_open(self): pass
    def parent_open(self): pass
    def close(self): pass
    def child_close(self): pass

    def child_main(self, n: int):
        raise NotImplementedError

    def send_all(self, n: int):
        raise NotImplementedError


class TpMpPipe(Throughput):
    name = "multiprocessing.Pipe(duplex=False)"

    def prepare(self):
        import multiprocessing as mp
        self.r, self.w = mp.Pipe(duplex=False)

    def child_main(self, n):
        recv = self.r.recv_bytes
        for _ in range(n):
            recv()

    def send_all(self, n):
        send = self.w.send_bytes
        for _ in range(n):
            send(TP_MSG)

    def close(self):
        self.r.close(); self.w.close()


class TpSeqPacket(Throughput):
    name = "socketpair SOCK_SEQPACKET"

    def prepare(self):
        self.a, self.b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

    def child_main(self, n):
        recv = self.b.recv
        for _ in range(n):
            recv(256)

    def send_all(self, n):
        send = self.a.send
        for _ in range(n):
            send(TP_MSG)

    def close(self):
        self.a.close(); self.b.close()


class TpZmq(_ZmqIpc, Throughput):
    name = "pyzmq PUSH/PULL ipc"
    endpoint, child_type, parent_type = "push", "PULL", "PUSH"

    def child_main(self, n):
        recv = self.cs.recv
        for _ in range(n):
            recv()

    def send_all(self, n):
        send = self.ps.send
        for _ in range(n):
            send(TP_MSG)



class TpIox(Throughput, _Iox):
    name = "iceoryx2 pub/sub (polling)"

    def __init__(self):
        _Iox.__init__(self)

    def prepare(self):
        self.sname = unique("ioxtp")

    def _open(self):
        iox = self.iox
        self.node = iox.NodeBuilder.new().create(iox.ServiceType.Ipc)
        self.svc = self._service(self.node, self.sname, Msg64, buffer=256)

    def child_open(self):
        self._open()
        self.sub = self.svc.subscriber_builder().create()

    def parent_open(self):
        self._open()
        self.pub = self._publisher(self.svc)

    def child_main(self, n):
        recv = self.sub.receive
        got = 0
        while got < n:
            s = recv()
            if s is not None:
                got += 1
                del s

    def send_all(self, n):
        dl = time.monotonic() + 10
        while time.monotonic() < dl:
            self.pub.update_connections()
            if self.svc.dynamic_config.number_of_subscribers > 0:
                break
            time.sleep(0.001)
        send = self.pub.send_copy
        msg = Msg64()
        for _ in range(n):
            send(msg)

    def close(self):
        for attr in ("sub", "pub", "svc", "node"):
            if hasattr(self, attr):
                delattr(self, attr)

    child_close = close


class TpPyRing(Throughput):
    name = "pure-Python shm SPSC ring"
    note = "64 slots x 64 B, head/tail counters via memoryview.cast('Q'), x86 TSO"
    SLOTS = 64

    def prepare(self):
        self.shm = shared_memory.SharedMemory(create=True, size=256 + self.SLOTS * 64)
        self.ctr = self.shm.buf[:256].cast("Q")   # [0] head (producer), [16] tail (consumer)
        self.data = self.shm.buf[256:]
        self.ctr[0] = 0
        self.ctr[16] = 0

    def child_main(self, n):
        ctr, data, S = self.ctr, self.data, self.SLOTS
        tail = 0
        head = 0
        while tail < n:
            while head == tail:
                head = ctr[0]
            while tail < head:
                off = (tail % S) * 64
                bytes(data[off:off + 64])
                tail += 1
            ctr[16] = tail

    def send_all(self, n):
        ctr, data, S = self.ctr, self.data, self.SLOTS
        head = 0
        tail = 0
        for _ in range(n):
            while head - tail >= S:
                tail = ctr[16]
            off = (head % S) * 64
            data[off:off + 64] = TP_MSG
            head += 1
            ctr[0] = head

    def close(self):
        self.ctr.release(); self.data.release()
        _close_shm(self.shm)


class TpMpQueue(Throughput):
    name = "multiprocessing.Queue"

    def prepare(self):
        import multiprocessing as mp
        self.q = mp.get_context("fork").Queue(maxsize=10000)

    def child_main(self, n):
        get = self.q.get
        for _ in range(n):
            get()

    def send_all(self, n):
        put = self.q.put
        for _ in range(n):
            put(TP_MSG)

    def close(self):
        self.q.close()
        self.q.join_thread()


class TpSSQueue(Throughput):
    name = "sharedstate Queue"
    group = "sharedstate"

    def __init__(self):
        self.ss = need_ss("Queue")

    def prepare(self):
        self.qname = unique("tpq")
        self.q = self.ss.Queue.create(self.qname, capacity=1 << 20)

    def child_open(self):
        self.cq = _queue_open(self.ss, self.qname)

    def child_main(self, n):
        get = self.cq.get
        for _ in range(n):
            get(timeout=20)

    def child_close(self):
        if hasattr(self.cq, "close"):
            self.cq.close()

    def send_all(self, n):
        put = self.q.put
        for _ in range(n):
            put(TP_MSG, timeout=20)

    def close(self):
        for attr in ("cq", "q"):
            o = getattr(self, attr, None)
            if o is not None and hasattr(o, "close"):
                try:
                    o.close()
                except Exception:
                    pass


class TpSSPipe(Throughput):
    name = "sharedstate Pipe"
    group = "sharedstate"
    parent_first = False

    def __init__(self):
        self.ss = need_ss("PipeServer")
        need_ss("Pipe")

    def prepare(self):
        self.pname = unique("tppipe")
        self.srv = self.ss.PipeServer(self.pname)

    def child_open(self):
        self.cli = self.ss.Pipe.connect(self.pname, timeout=10)

    def parent_open(self):
        self.conn = self.srv.accept(timeout=10)

    def child_main(self, n):
        recv = self.cli.recv
        for _ in range(n):
            recv(timeout=20)

    def child_close(self):
        self.cli.close()

    def send_all(self, n):
        send = self.conn.send
        for _ in range(n):
            send(TP_MSG)

    close = SSPipe.close


THROUGHPUTS = [
    ("ss_queue", TpSSQueue),
    ("ss_pipe", TpSSPipe),
    ("mp_pipe", TpMpPipe),
    ("seqpacket", TpSeqPacket),
    ("zmq_pushpull", TpZmq),
    ("iox", TpIox),
    ("py_ring", TpPyRing),
    ("mp_queue", TpMpQueue),
]


# ================================================================== torn reads
class Torn:
    """A writer process sets x = y = i at full speed; the parent reads and counts x != y."""
    name = "?"
    group = "peer"

    parent_first = True

    def prepare(self): pass
    def child_open(self): pass
    def parent_open(self): pass
    def close(self): pass
    def child_close(self): pass

    def writer(self):
        raise NotImplementedError

    def make_reader(self):
        """A closure returning (x, y)."""
        raise NotImplementedError


class TornStruct(Torn):
    name = "shared_memory + Struct.pack_into / unpack_from"

    def prepare(self):
        self.shm = shared_memory.SharedMemory(create=True, size=64)
        self.s = struct.Struct(CTRL_FMT)

    def writer(self):
        buf, pack = self.shm.buf, self.s.pack_into
        i = 0
        while True:
            i += 1
            pack(buf, 0, i, i, True, True, True)

    def make_reader(self):
        buf, unpack = self.shm.buf, self.s.unpack_from
        return lambda: unpack(buf)[:2]

    def close(self):
        _close_shm(self.shm)


class TornCtypes(Torn):
    name = "shared_memory + ctypes from_buffer field writes"

    def prepare(self):
        self.shm = shared_memory.SharedMemory(create=True, size=64)

    def writer(self):
        c = Controller.from_buffer(self.shm.buf)
        i = 0
        while True:
            i += 1
            c.x = i
            c.y = i

    def make_reader(self):
        c = Controller.from_buffer(self.shm.buf)
        self._c = c
        return lambda: (c.x, c.y)

    def close(self):
        del self._c
        _close_shm(self.shm)


class TornSS(Torn):
    name = "sharedstate write(x=i, y=i) / read()"
    group = "sharedstate"

    def __init__(self):
        self.ss = sharedstate()

    def prepare(self):
        self.sname = unique("torn")
        self.st = self.ss.SharedState.create(self.sname, self.ss.CONTROLLER)

    def child_open(self):
        self.cst = self.ss.SharedState.open(self.sname)

    def writer(self):
        write = self.cst.write
        i = 0
        while True:
            i += 1
            write(x=i, y=i)

    def make_reader(self):
        read = self.st.read
        return lambda: read()[:2]

    def close(self):
        self.st.close()


class TornRaw(TornStruct):
    name = "pack_into writer / sharedstate attach_raw read() (legacy segment, best-effort)"
    group = "sharedstate"

    def __init__(self):
        self.ss = sharedstate()

    def make_reader(self):
        self.raw = self.ss.SharedState.attach_raw(self.shm.name.lstrip("/"), self.ss.CONTROLLER)
        read = self.raw.read
        return lambda: read()[:2]

    def close(self):
        self.raw.close()
        TornStruct.close(self)


TORN = [
    ("struct", TornStruct),
    ("ctypes", TornCtypes),
    ("ss", TornSS),
    ("ss_raw", TornRaw),
]


# ================================================================== state access, one process
def state_access_cases():
    """[(key, label, group, kind, stmt, namespace or Skip)], and a cleanup function.

    kind is "read", "field_read", "field_write", "write", "read_all" or "info"; compare.py
    times each stmt with timeit (the statement is compiled into timeit's own loop, so
    no Python function call is added around it) and reports ns per execution.
    """
    cases = []
    cleanups = []
    shm = shared_memory.SharedMemory(create=True, size=4096)
    cleanups.append(lambda: _close_shm(shm))
    s = struct.Struct(CTRL_FMT)
    ns = {"buf": shm.buf, "s": s, "unpack_from": s.unpack_from, "pack_into": s.pack_into}
    cases += [
        ("struct_read", "shm + Struct.unpack_from (torn)", "peer", "read", "unpack_from(buf)", ns),
        ("struct_write", "shm + Struct.pack_into (torn)", "peer", "write", "pack_into(buf, 0, 1, 2, True, False, True)", ns),
    ]

    c = Controller.from_buffer(shm.buf, 256)
    nsc = {"c": c}
    cases += [
        ("ctypes_field_read", "ctypes from_buffer .x read", "peer", "field_read", "c.x", nsc),
        ("ctypes_field_write", "ctypes from_buffer .x = v", "peer", "field_write", "c.x = 5", nsc),
        ("ctypes_all5", "ctypes from_buffer, all 5 fields", "peer", "read", "(c.x, c.y, c.is_open, c.is_running, c.is_pressing)", nsc),
    ]

    try:
        np = _import("numpy")
        dt = np.dtype([("x", "<i4"), ("y", "<i4"), ("is_open", "?"), ("is_running", "?"), ("is_pressing", "?")], align=True)
        arr = np.ndarray((1,), dt, buffer=shm.buf, offset=512)
        nsn = {"arr": arr}
        cases += [
            ("numpy_field", "numpy structured view arr['x'][0]", "peer", "field_read", "arr['x'][0]", nsn),
            ("numpy_item", "numpy structured view arr[0].item()", "peer", "read", "arr[0].item()", nsn),
            ("numpy_copy", "numpy structured view arr.copy()", "peer", "read", "arr.copy()", nsn),
        ]
    except Skip as e:
        cases.append(("numpy_field", "numpy structured view", "peer", "read", None, Skip(str(e))))

    # A pure-Python seqlock: even/odd counter in a memoryview.cast('I'), payload behind it.
    ctr = shm.buf[1024:1088].cast("I")

    def seq_read(ctr=ctr, buf=shm.buf, unpack_from=s.unpack_from):
        while True:
            s1 = ctr[0]
            if s1 & 1:
                continue
            v = unpack_from(buf, 1088)
            if ctr[0] == s1:
                return v

    def seq_write(x, y, a, b, c_, ctr=ctr, buf=shm.buf, pack_into=s.pack_into):
        ctr[0] += 1
        pack_into(buf, 1088, x, y, a, b, c_)
        ctr[0] += 1

    nss = {"seq_read": seq_read, "seq_write": seq_write}
    cases += [
        ("pyseqlock_read", "pure-Python seqlock read", "peer", "read", "seq_read()", nss),
        ("pyseqlock_write", "pure-Python seqlock write", "peer", "write", "seq_write(1, 2, True, False, True)", nss),
    ]

    spaces = [ns, nsc, nss]   # cleared at the end so that no view of shm stays exported
    if "nsn" in locals():
        spaces.append(nsn)

    try:
        iox = _import("iceoryx2")
        try:
            iox.set_log_level(iox.LogLevel.Error)
        except Exception:
            pass
        node = iox.NodeBuilder.new().create(iox.ServiceType.Ipc)
        key = ctypes.c_uint64(0)
        svc = (node.service_builder(iox.ServiceName.new(unique("bb")))
               .blackboard_creator(ctypes.c_uint64).add(key, Controller()).create())
        wr = svc.writer_builder().create()
        rd = svc.reader_builder().create()
        eh = wr.entry(key, Controller)
        rh = rd.entry(key, Controller)
        val = Controller(1, 2, True, False, True)
        nsi = {"rh": rh, "eh": eh, "val": val, "C": Controller}
        cases += [
            ("iox_bb_read", "iceoryx2 blackboard get().decode_as(T)", "peer", "read", "rh.get().decode_as(C)", nsi),
            ("iox_bb_write", "iceoryx2 blackboard update_with_copy", "peer", "write", "eh.update_with_copy(val)", nsi),
        ]
        nsi["_keep"] = (node, svc, wr, rd)   # alive until cleanup clears the namespace
        spaces.append(nsi)
    except Skip as e:
        cases.append(("iox_bb_read", "iceoryx2 blackboard", "peer", "read", None, Skip(str(e))))
    except Exception as e:  # iceoryx2 present but failing here: say so
        cases.append(("iox_bb_read", "iceoryx2 blackboard", "peer", "read", None,
                      Skip(f"iceoryx2 blackboard failed: {type(e).__name__}: {e}"[:160])))

    try:
        ss = sharedstate()
        st = ss.SharedState.create(unique("access"), ss.CONTROLLER)
        st.write(x=1, y=2, is_open=True)
        out = bytearray(ss.CONTROLLER.size)
        view = st.view()
        nss2 = {"st": st, "out": out, "view": view, "read": st.read}
        cases += [
            ("ss_read", "sharedstate read()", "sharedstate", "read", "st.read()", nss2),
            ("ss_field_read", "sharedstate field read st.x", "sharedstate", "field_read", "st.x", nss2),
            ("ss_field_write", "sharedstate field write st.x = v", "sharedstate", "field_write", "st.x = 5", nss2),
            ("ss_write", "sharedstate write(x=.., y=..)", "sharedstate", "write", "st.write(x=1, y=2)", nss2),
            # read() hands back the previous snapshot object while the sequence has not moved;
            # a reader polling a live state pays the full read. write+read minus write is that.
            ("ss_write_read", "sharedstate write(x=..) then read()", "sharedstate", "info",
             "st.write(x=1, y=2); st.read()", nss2),
            ("ss_read_into", "sharedstate read_into(bytearray)", "sharedstate", "info", "st.read_into(out)", nss2),
            ("ss_version", "sharedstate .version", "sharedstate", "info", "st.version", nss2),
            ("ss_view_field", "sharedstate view()['x'][0] (unsynchronized)", "sharedstate", "info", "view['x'][0]", nss2),
        ]

        def _ss_close():
            nss2.clear()
            st.close()
        cleanups.insert(0, _ss_close)
    except Skip as e:
        cases.append(("ss_read", "sharedstate read()", "sharedstate", "read", None, Skip(str(e))))

    # The floor of any binding: a bare METH_NOARGS call and a bare getset attribute.
    floor_obj = (12345).bit_length
    cases += [
        ("floor_noargs", "floor: bare METH_NOARGS call (int.bit_length)", "floor", "info", "f()", {"f": floor_obj}),
        ("floor_getset", "floor: bare C getset attribute (slice.start)", "floor", "info", "o.start", {"o": slice(1, 2)}),
    ]

    def cleanup():
        import gc
        for space in spaces:
            space.clear()
        ctr.release()
        gc.collect()
        for f in cleanups:
            try:
                f()
            except Exception:
                pass

    return cases, cleanup
