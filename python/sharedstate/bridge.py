"""Beyond one machine: mirror states, frames and queues over Eclipse Zenoh.

    pip install 'sharedstate[zenoh]'

    # machine A (the game): publish a local object
    python -m sharedstate bridge export ControllerMemory --listen tcp/0.0.0.0:7447
    # machine B (the trainer): a local mirror that the plain API reads (Python or C++)
    python -m sharedstate bridge import sharedstate/gamepc/ControllerMemory --as Controller --connect tcp/gamepc:7447

From Python, with a session of your own (``ss.bridge.session(listen=..., connect=...)``)::

    ss.bridge.export_state("ControllerMemory", key, session)
    ss.bridge.import_state(key, "Controller", session)
    ss.SharedState.open("Controller").info()["source"]   # {"key": ..., "alive": True, "changes": 1}

What travels, under the key K (docs/bridge.md has the whole protocol):

- ``K/meta``: a queryable answering the object's kind and layout (shape, dtype, capacity) as JSON;
- ``K/data`` (states, frames): the latest value with its version, from an advanced publisher with a
  cache of one, so a late joiner gets the latest value at once. The exporter waits with the
  library's own ``wait()`` and always sends the newest consistent value: a slow network drops
  intermediate versions, never tears one;
- ``K/q`` and ``K/ack`` (queues): every message in order, in numbered batches that the importer
  acknowledges; unacknowledged batches are resent (after a link outage too). The exporter keeps
  at most ``window`` bytes unacknowledged; past that it stops taking messages from the local queue,
  which fills, and its producers see a full queue: back-pressure, not silent loss;
- ``K/alive``: a liveliness token, withdrawn when the bridge stops or dies, or when the local
  object's last writer has died (and declared again when a live writer writes).

The bridge adds no layout language and parses no segment bytes: it reads and writes the local
objects through the ordinary API. Zenoh is imported only when a bridge is made.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import secrets
import signal
import socket
import struct
import sys
import threading
import time
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Tuple

__all__ = [
    "Bridge", "default_key", "export_frames", "export_queue", "export_state", "import_frames",
    "import_queue", "import_state", "make_config", "session",
]

_EXTRA_HINT = "sharedstate.bridge needs Eclipse Zenoh: pip install 'sharedstate[zenoh]' (the eclipse-zenoh package)"
# K/data: magic, exporter epoch (random per export), version
_DATA = struct.Struct("<4sQQ")
_DATA_MAGIC = b"SSD1"
# K/q: magic, epoch, batch sequence number, base (every batch below it was acknowledged), message
# count; then per message u32 length + bytes
_BATCH = struct.Struct("<4sQQQI")
_BATCH_MAGIC = b"SSQ1"
_LEN = struct.Struct("<I")
# K/ack: magic, epoch, highest batch delivered in order (+1), flags (1: a gap was seen: resend)
_ACK = struct.Struct("<4sQQI")
_ACK_MAGIC = b"SSA1"


def _zenoh() -> Any:
    try:
        import zenoh  # type: ignore[import-not-found,unused-ignore]  # an optional extra
        import zenoh.ext  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError as e:  # pragma: no cover - exercised by test_bridge without zenoh
        raise ImportError(_EXTRA_HINT) from e
    return zenoh


def default_key(name: str) -> str:
    """``sharedstate/<hostname>/<name>``: several machines exporting the same name do not collide."""
    host = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname()) or "host"
    return f"sharedstate/{host}/{name}"


def make_config(listen: Optional[Iterable[str]] = None, connect: Optional[Iterable[str]] = None,
                config_file: Optional[str] = None, scouting: bool = False,
                shared_memory: Optional[bool] = None) -> Any:
    """A Zenoh config for the bridge: peer mode, the given endpoints, and no surprises.

    Without ``listen`` the bridge listens only on loopback (``tcp/127.0.0.1:0``): it never opens a
    port on the network unless told to. Multicast and gossip scouting are off unless
    ``scouting=True`` (so a bridge does not discover, or get discovered by, the whole LAN).
    Zenoh's shared-memory transport is off unless ``shared_memory=True`` (or a config file
    turns it on): the bridge is for crossing machines, where it does nothing; on one machine
    it leaves a 1.3 MB segment per process in /dev/shm at exit, and a receiver keeps every
    sender's segments mapped and locked for its own lifetime (zenoh#2787), so a long-running
    importer would grow with each exporter restart. One machine is what sharedstate itself is for.
    ``config_file`` is any Zenoh config (JSON5); the arguments given here override it.
    """
    zenoh = _zenoh()
    c = zenoh.Config.from_file(config_file) if config_file else zenoh.Config()
    if not config_file:
        c.insert_json5("mode", '"peer"')
    if listen is not None or not config_file:
        c.insert_json5("listen/endpoints", json.dumps(list(listen) if listen else ["tcp/127.0.0.1:0"]))
    if connect:
        c.insert_json5("connect/endpoints", json.dumps(list(connect)))
    # the advanced publisher's cache (late joiners get the latest value) needs timestamps
    c.insert_json5("timestamping/enabled", "true")
    if not scouting:
        c.insert_json5("scouting/multicast/enabled", "false")
        c.insert_json5("scouting/gossip/enabled", "false")
    if shared_memory is not None or not config_file:
        c.insert_json5("transport/shared_memory/enabled", "true" if shared_memory else "false")
    return c


def session(listen: Optional[Iterable[str]] = None, connect: Optional[Iterable[str]] = None,
            config_file: Optional[str] = None, scouting: bool = False,
            shared_memory: Optional[bool] = None) -> Any:
    """``zenoh.open(make_config(...))``: a session to pass to the export/import functions."""
    return _zenoh().open(make_config(listen, connect, config_file, scouting, shared_memory))


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if sys.platform == "win32":
        import ctypes
        k32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
        h = k32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not h:
            return ctypes.get_last_error() == 5  # ERROR_ACCESS_DENIED: it exists
        code = ctypes.c_ulong()
        ok = k32.GetExitCodeProcess(h, ctypes.byref(code))
        k32.CloseHandle(h)
        return bool(ok) and code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _query_meta(sess: Any, key: str, timeout: float) -> Dict[str, Any]:
    """The exporter's description of K (retried until ``timeout``: the exporter may start later)."""
    deadline = time.monotonic() + timeout
    while True:
        for r in sess.get(f"{key}/meta", timeout=min(2.0, max(0.1, deadline - time.monotonic()))):
            if r.ok is not None:
                meta: Dict[str, Any] = json.loads(r.ok.payload.to_bytes())
                return meta
        if time.monotonic() >= deadline:
            raise TimeoutError(f"bridge: no exporter answered for key {key!r} within {timeout:g} s "
                               f"(is `sharedstate bridge export` running and connected?)")
        time.sleep(0.05)


class _Link:
    """One exported or imported object: its Zenoh declarations and its thread, stopped by close()."""

    kind = "?"

    def __init__(self, key: str) -> None:
        self.key = key
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._undo: List[Callable[[], None]] = []
        self.error: Optional[BaseException] = None

    def _start(self, target: Callable[[], None], name: str) -> None:
        def run() -> None:
            try:
                target()
            except BaseException as e:  # reported by close() / the CLI, never lost
                if not self._stop.is_set():
                    self.error = e
        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()

    def _declared(self, obj: Any) -> Any:
        self._undo.append(obj.undeclare)
        return obj

    @property
    def running(self) -> bool:
        return self._thread is None or self._thread.is_alive()

    def close(self) -> None:
        """Stop: undeclare everything (the liveliness token goes) and close the local object."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        for undo in reversed(self._undo):
            try:
                undo()
            except Exception:
                pass
        self._undo.clear()
        self._close_local()

    def _close_local(self) -> None:
        pass

    def __enter__(self) -> "_Link":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<bridge {type(self).__name__} {self.key!r}>"


# ====================================================================== export
class _Export(_Link):
    def __init__(self, sess: Any, key: str, meta: Dict[str, Any]) -> None:
        super().__init__(key)
        self.session = sess
        self.epoch = secrets.randbits(63)
        self._meta = json.dumps(dict(meta, epoch=self.epoch)).encode()
        self._declared(sess.declare_queryable(f"{key}/meta", self._on_meta, complete=True))
        self._token: Optional[Any] = None
        self._set_alive(True)

    def _on_meta(self, query: Any) -> None:
        query.reply(f"{self.key}/meta", self._meta)

    def _set_alive(self, alive: bool) -> None:
        if alive and self._token is None:
            self._token = self.session.liveliness().declare_token(f"{self.key}/alive")
        elif not alive and self._token is not None:
            self._token.undeclare()
            self._token = None

    def close(self) -> None:
        super().close()
        self._set_alive(False)


class _LatestExport(_Export):
    """States and frames: wait for a new version, send the newest consistent value.

    A thread of the bridge waits with the local object's own ``wait()`` and sends each new
    version. A writer in this process can instead send its own values at once from its own
    thread (``StateExport.write``): no wake-up of the bridge's thread between the write and the
    put. While it does (a direct send within the last ``poll`` seconds) the thread stops
    waiting on the object, whose every write would wake it for nothing, and only looks for
    values written by other processes every ``poll`` seconds."""

    local: Any

    def __init__(self, sess: Any, key: str, meta: Dict[str, Any], poll: float) -> None:
        zenoh = _zenoh()
        super().__init__(sess, key, meta)
        self._poll = poll
        self._send_lock = threading.Lock()  # one message at a time, versions in order
        self._sent = -1  # the version sent last
        self._direct_at = -1e9  # monotonic time of the last direct send
        self._alive_at = -1e9  # monotonic time of the last liveness check
        self._pub = self._declared(zenoh.ext.declare_advanced_publisher(
            sess, f"{key}/data", cache=zenoh.ext.CacheConfig(max_samples=1), publisher_detection=True,
            congestion_control=zenoh.CongestionControl.BLOCK, express=True))
        self._declare_more(sess, key)
        self._start(self._run, f"bridge-export-{key}")

    def _declare_more(self, sess: Any, key: str) -> None:
        pass

    def _writer_alive(self) -> bool:
        return True

    def _run(self) -> None:
        since = -1
        while not self._stop.is_set():
            version = self._wait(since)
            now = time.monotonic()
            force = False
            if version is None or now - self._alive_at >= self._poll:  # not per value: info() + a pid check
                self._alive_at = now
                self._set_alive(self._writer_alive())
                force = self._newly_wanted()
            if version is None and not force:
                continue
            since = self._send(force)

    def _newly_wanted(self) -> bool:
        """True when a receiver appeared that the value must be sent again for (frames)."""
        return False

    def _send(self, force: bool = False) -> int:
        """Send the newest value unless it went already; the version the link has sent."""
        with self._send_lock:
            message, version = self._message()
            if version != self._sent or force:
                self._pub.put(message)
                self._sent = version
            return version

    def _wait(self, since: int) -> Optional[int]:
        """The version to send now, or None (nothing new within ``poll``: check liveness)."""
        if since < 0:  # the first value, at once (frames: once there is one)
            v = int(self.local.version)
            if v > 0 or self.kind == "state":
                return v
            since = 0
        if time.monotonic() - self._direct_at < self._poll:  # this process sends its own writes
            self._stop.wait(self._poll)
            v = int(self.local.version)
            return v if v != self._sent else None
        try:
            return int(self.local.wait(since=since, timeout=self._poll))
        except TimeoutError:
            return None

    def _message(self) -> Tuple[Any, int]:
        """The K/data message of the newest consistent value (ZBytes or a Zenoh shm buffer), and its version."""
        raise NotImplementedError


class StateExport(_LatestExport):
    """A local SharedState published under ``key`` (see :func:`export_state`)."""

    kind = "state"

    def __init__(self, name: str, key: str, sess: Any, poll: float = 0.2) -> None:
        from ._state import SharedState
        self.local = SharedState.open(name)
        L = self.local.layout
        # the message is built in place: the header, then one consistent copy of the payload
        self._out = bytearray(_DATA.size + L.size)
        self._payload = memoryview(self._out)[_DATA.size:]
        try:
            super().__init__(sess, key, {"kind": "state", "name": name, "fields": L._spec(),
                                         "size": L.size, "align": L.align}, poll)
        except BaseException:
            self.local.close()
            raise

    def _message(self) -> Tuple[Any, int]:
        version = int(self.local.read_into(self._payload))  # one consistent copy, and the version it had
        _DATA.pack_into(self._out, 0, _DATA_MAGIC, self.epoch, version)
        return self._out, version  # put() copies it at once (bytearray into a ZBytes)

    def write(self, *args: Any, **fields: Any) -> int:
        """``local.write(...)`` (the same arguments as SharedState.write), then the new value is
        sent at once from this thread: the lowest latency, for a writer in this process. Returns
        the version sent (the newest: a write from elsewhere in between wins, as on the link)."""
        self.local.write(*args, **fields)
        self._direct_at = time.monotonic()
        return self._send()

    def _writer_alive(self) -> bool:
        info = self.local.info()
        pid = info.get("lock_owner_pid") or info.get("last_writer_pid")
        return pid is None or pid == os.getpid() or _pid_alive(int(pid))

    def _close_local(self) -> None:
        self.local.close()


class FramesExport(_LatestExport):
    """Local Frames published under ``key`` (see :func:`export_frames`)."""

    kind = "frames"

    def __init__(self, name: str, key: str, sess: Any, poll: float = 0.2,
                 shared_memory: Optional[bool] = None) -> None:
        from . import Frames
        import numpy as np
        zenoh = _zenoh()
        self.local = Frames.open(name)
        dt = np.dtype(self.local.dtype)
        info = self.local.info()
        # Importers on this machine that can open the Frames themselves (the meta's "same_host":
        # name and identity) copy each frame straight from them while this export is alive
        # (import_frames(same_host=True)): no frame bytes cross Zenoh for them. K/data carries
        # whole frames only while a subscriber of it exists (a probe publisher's matching status
        # says so); with none, this thread does not wake for every frame.
        self._ident = (int(info["creator_pid"]), int(info["created_unix_ns"]))
        meta = {"kind": "frames", "name": name, "shape": list(self.local.shape),
                "dtype": dt.descr if dt.fields else dt.str,
                "same_host": {"name": name, "creator_pid": self._ident[0], "created_unix_ns": self._ident[1]}}
        self._data_wanted = False
        # The payload is the frame alone; the header rides in the sample's attachment. Zenoh
        # takes bytes or bytearray only (no buffer protocol in zenoh-python 1.10:
        # zenoh-python#730), so the pinned frame is handed over as a bytearray that borrows the
        # slot (_core._with_bytearray): one copy, into a Zenoh shm buffer with shared_memory
        # (local peers map it, nothing crosses the socket), else into the ZBytes Zenoh sends.
        self._nbytes = int(self.local.nbytes)
        self._provider: Any = None
        self.shm_messages = 0  # frames sent in a Zenoh shm buffer (the rest as plain bytes)
        if shared_memory:
            # Several messages in flight: one being filled, one on the way, and each local
            # receiver holding one while it copies it out (Zenoh frees a buffer when every
            # receiver dropped it); 16 MiB at least, Zenoh's own default pool size.
            self._provider = zenoh.shm.ShmProvider.default_backend(max(8 * self._nbytes, 16 << 20))
            self._policy = zenoh.shm.GarbageCollect()
        try:
            super().__init__(sess, key, meta, poll)
        except BaseException:
            self.local.close()
            raise

    def _frame_message(self) -> Tuple[Any, bytes, int]:
        """The newest frame as a K/data payload (a Zenoh shm buffer or a ZBytes, one copy of
        the pinned slot), its header (the attachment) and its version."""
        from . import _core
        pin = self.local._core.latest()  # pinned: the writer cannot reuse the slot while we copy it
        try:
            version = int(pin.version)
            header = _DATA.pack(_DATA_MAGIC, self.epoch, version)
            buf = self._shm_buffer() if self._provider is not None else None
            if buf is not None:
                _core._with_bytearray(pin, lambda frame: buf.__setitem__(slice(0, self._nbytes), frame))
                self.shm_messages += 1
                return buf, header, version
            return _core._with_bytearray(pin, _zenoh().ZBytes), header, version
        finally:
            del pin  # unpinned with its last reference

    def _declare_more(self, sess: Any, key: str) -> None:
        self._probe = self._declared(sess.declare_publisher(f"{key}/data"))  # never puts: matching only

    def _newly_wanted(self) -> bool:
        wanted = bool(self._probe.matching_status.matching)
        newly = wanted and not self._data_wanted
        self._data_wanted = wanted
        return newly

    def _wait(self, since: int) -> Optional[int]:
        if not self._data_wanted:  # nobody takes whole frames: look again in ``poll``
            self._stop.wait(self._poll)
            return None
        return super()._wait(since)

    def _send(self, force: bool = False) -> int:
        with self._send_lock:
            version = int(self.local.version)
            if (version == self._sent and not force) or not self._data_wanted:
                return version
            payload, header, version = self._frame_message()
            self._pub.put(payload, attachment=header)
            self._sent = version
            return version

    def _shm_buffer(self) -> Any:
        """A Zenoh shm buffer for the next message, or None. Every buffer is held by a receiver
        still copying one out: wait a little for one (a frame sent as plain bytes instead costs
        a 1 MiB trip through the socket, far longer), up to 20 ms, then send plain bytes."""
        deadline = time.monotonic() + 0.02
        while True:
            try:
                return self._provider.alloc(self._nbytes, policy=self._policy)
            except Exception:
                if time.monotonic() >= deadline or self._stop.is_set():
                    return None
                time.sleep(0.0002)

    def _close_local(self) -> None:
        self.local.close()


class QueueExport(_Export):
    """A local Queue drained and sent under ``key`` in order, none lost (see :func:`export_queue`)."""

    kind = "queue"

    def __init__(self, name: str, key: str, sess: Any, window: int = 16 << 20, batch: int = 64 << 10,
                 resend_after: float = 0.5) -> None:
        from ._queue import Queue
        zenoh = _zenoh()
        self.local = Queue.open(name)
        self.window, self.batch, self.resend_after = int(window), int(batch), float(resend_after)
        self._unacked: Deque[Tuple[int, Tuple[int, bytes]]] = collections.deque()  # (seq, (count, body))
        self._unacked_bytes = 0
        self._acked = 0  # batches below this one were delivered
        self._next = 0
        self._gap = False
        self._progress = time.monotonic()
        self._cv = threading.Condition()
        info = self.local.info()
        try:
            super().__init__(sess, key, {"kind": "queue", "name": name, "capacity": info.get("capacity"),
                                         "max_message": info.get("max_message")})
            self._pub = self._declared(sess.declare_publisher(
                f"{key}/q", congestion_control=zenoh.CongestionControl.BLOCK,
                reliability=zenoh.Reliability.RELIABLE))
            self._declared(sess.declare_subscriber(f"{key}/ack", self._on_ack))
        except BaseException:
            self.close()
            raise
        self._start(self._run, f"bridge-export-{key}")

    def _on_ack(self, sample: Any) -> None:
        b = sample.payload.to_bytes()
        if len(b) != _ACK.size:
            return
        magic, epoch, upto, flags = _ACK.unpack(b)
        if magic != _ACK_MAGIC or epoch != self.epoch:
            return
        with self._cv:
            if upto > self._acked:
                self._acked = upto
                self._progress = time.monotonic()
                while self._unacked and self._unacked[0][0] < upto:
                    self._unacked_bytes -= len(self._unacked.popleft()[1][1])
            if flags & 1:
                self._gap = True
            self._cv.notify_all()

    def _run(self) -> None:
        q = self.local
        while not self._stop.is_set():
            self._resend_if_needed()
            with self._cv:  # the window is full: wait for acks (the local queue fills meanwhile)
                if self._unacked_bytes >= self.window:
                    self._cv.wait(0.05)
                    continue
            if not self._pub.matching_status.matching:  # nobody to deliver to: keep the messages queued here
                self._stop.wait(0.05)
                continue
            try:
                first = q.get(timeout=0.1)
            except TimeoutError:
                continue
            msgs = [first]
            size = len(first)
            while size < self.batch:
                try:
                    m = q.get(timeout=0)
                except TimeoutError:
                    break
                msgs.append(m)
                size += len(m)
            seq = self._next
            self._next += 1
            parts: List[bytes] = []  # the header is packed at each send (_send): its base is the current one
            for m in msgs:
                parts.append(_LEN.pack(len(m)))
                parts.append(m)
            body = (len(msgs), b"".join(parts))
            with self._cv:
                self._unacked.append((seq, body))
                self._unacked_bytes += len(body[1])
            self._send(seq, body)

    def _send(self, seq: int, body: Tuple[int, bytes]) -> None:
        with self._cv:
            base = self._acked
        self._pub.put(_BATCH.pack(_BATCH_MAGIC, self.epoch, seq, base, body[0]) + body[1])

    def _resend_if_needed(self) -> None:
        with self._cv:
            stalled = self._unacked and time.monotonic() - self._progress > self.resend_after
            if not (self._gap or stalled):
                return
            self._gap = False
            self._progress = time.monotonic()
            pending = list(self._unacked)
        for seq, body in pending:
            if self._stop.is_set():
                return
            self._send(seq, body)

    @property
    def pending(self) -> int:
        """Bytes sent but not yet acknowledged by the importer (bounded by ``window``)."""
        with self._cv:
            return self._unacked_bytes

    def _close_local(self) -> None:
        self.local.close()


# ====================================================================== import
class _Import(_Link):
    def __init__(self, sess: Any, key: str) -> None:
        super().__init__(key)
        self.session = sess
        self.source_alive = False
        self._epoch: Optional[int] = None
        self._alive_cb: List[Callable[[bool], None]] = []

    def _watch_alive(self) -> None:
        zenoh = _zenoh()

        def on_token(sample: Any) -> None:
            alive = sample.kind == zenoh.SampleKind.PUT
            self.source_alive = alive
            self._record_alive(alive)

        self._declared(self.session.liveliness().declare_subscriber(f"{self.key}/alive", on_token, history=True))

    def _record_alive(self, alive: bool) -> None:
        pass


class _LatestImport(_Import):
    """States and frames: the latest value from ``K/data`` into the local object, in order."""

    local: Any

    def __init__(self, sess: Any, key: str, kind: str, timeout: float) -> None:
        super().__init__(sess, key)
        self._lock = threading.Lock()
        self._last: Tuple[Any, int] = (-1, -1)  # (exporter epoch or source identity, version) the mirror has
        # on_update(local): called in Zenoh's receiving thread once each new value is in the
        # mirror (no wake-up of another thread: the lowest latency to react to a value). Keep it
        # short, it holds up the next value; an exception it raises is kept in ``error``.
        self.on_update: Optional[Callable[[Any], object]] = None
        self._nbytes = 0
        self.meta = _query_meta(sess, key, timeout)
        if self.meta.get("kind") != kind:
            raise ValueError(f"bridge: key {key!r} is a {self.meta.get('kind')}, not a {kind} "
                             f"(use import_{self.meta.get('kind')})")

    def _subscribe(self) -> None:
        try:
            zenoh = _zenoh()
            self._watch_alive()
            self._declared(zenoh.ext.declare_advanced_subscriber(
                self.session, f"{self.key}/data", self._on_data,
                history=zenoh.ext.HistoryConfig(detect_late_publishers=True, max_samples=1),
                subscriber_detection=True))
        except BaseException:
            self.close()
            raise

    def _on_data(self, sample: Any) -> None:
        att = sample.attachment
        b = sample.payload.to_bytes()
        if att is not None:  # frames: the header in the attachment, the payload is the value
            h = att.to_bytes()
            if len(h) != _DATA.size or len(b) != self._nbytes:
                return  # malformed: never written
            magic, epoch, version = _DATA.unpack(h)
            payload = memoryview(b)
        else:  # states: the header, then the value
            if len(b) != _DATA.size + self._nbytes:
                return
            magic, epoch, version = _DATA.unpack_from(b)
            payload = memoryview(b)[_DATA.size:]
        if magic != _DATA_MAGIC:
            return
        with self._lock:  # versions only move forward within one exporter's life
            if (epoch, version) == self._last or (epoch == self._last[0] and version < self._last[1]):
                return
            self._last = (epoch, version)
            if self.local.closed:
                return
            self._apply(payload)
        if self.on_update is not None:
            try:
                self.on_update(self.local)
            except Exception as e:  # kept, never raised into Zenoh's thread; the link goes on
                self.error = e

    def _apply(self, payload: memoryview) -> None:
        raise NotImplementedError

    def _close_local(self) -> None:
        with self._lock:
            self.local.close()


class StateImport(_LatestImport):
    """A local mirror of the remote state ``key`` (see :func:`import_state`)."""

    kind = "state"

    def __init__(self, key: str, local_name: str, sess: Any, timeout: float = 10.0,
                 on_update: Optional[Callable[[Any], object]] = None) -> None:
        from ._layout import Layout
        from ._state import SharedState
        super().__init__(sess, key, "state", timeout)
        self.on_update = on_update
        layout = Layout._make(self.meta["fields"], self.meta["size"], self.meta["align"])
        self.local = SharedState._create_mirror(local_name, layout, key)
        self._nbytes = layout.size
        self._subscribe()

    def _apply(self, payload: memoryview) -> None:
        self.local.write(payload)

    def _record_alive(self, alive: bool) -> None:
        with self._lock:
            if not self.local.closed:
                self.local._set_source_alive(alive)

    def _close_local(self) -> None:
        with self._lock:
            if not self.local.closed:
                try:
                    self.local._set_source_alive(False)
                except Exception:
                    pass
            self.local.close()


class FramesImport(_LatestImport):
    """A local Frames mirror of the remote frames ``key`` (see :func:`import_frames`)."""

    kind = "frames"

    def __init__(self, key: str, local_name: str, sess: Any, timeout: float = 10.0, readers: int = 4,
                 on_update: Optional[Callable[[Any], object]] = None, same_host: bool = True) -> None:
        import numpy as np
        from . import Frames
        super().__init__(sess, key, "frames", timeout)
        self.on_update = on_update
        d = self.meta["dtype"]
        dt = np.dtype([tuple(f) for f in d] if isinstance(d, list) else d)
        shape = tuple(self.meta["shape"])
        self.local = Frames.create(local_name, shape, dt, readers=readers, exist_ok=True)
        if tuple(self.local.shape) != shape or np.dtype(self.local.dtype) != dt:
            from ._core import LayoutMismatchError
            got = (tuple(self.local.shape), np.dtype(self.local.dtype))
            self.local.close()
            raise LayoutMismatchError(f"frames {local_name!r} exist as {got}, the source {key!r} sends {(shape, dt)}")
        self._nbytes = int(np.prod(shape)) * dt.itemsize
        self._shape, self._dtype = shape, dt
        self._poll = 0.2
        self._src: Any = None  # the exported Frames themselves, when this is their machine
        self._src_ident: Tuple[int, int] = (-1, -1)
        here = self.meta.get("same_host")
        self._same_host = bool(same_host and isinstance(here, dict) and self._open_source(
            str(here.get("name")), (int(here.get("creator_pid", -1)), int(here.get("created_unix_ns", -1)))))
        if self._same_host:
            self._subscribe_same_host()
        else:
            self._subscribe()

    @property
    def same_host(self) -> bool:
        """True when frames are copied straight from the exported Frames on this machine."""
        return self._same_host

    def _open_source(self, name: str, ident: Tuple[int, int]) -> bool:
        """Open the exported Frames ``name`` if they are the very segment the exporter reads
        (same creator pid and creation time: not another machine's or an older one)."""
        from . import Frames
        import numpy as np
        try:
            src = Frames.open(name)
        except (OSError, ValueError):
            return False  # another machine, another user, or gone
        i = src.info()
        if ((int(i["creator_pid"]), int(i["created_unix_ns"])) != ident or tuple(src.shape) != self._shape
                or np.dtype(src.dtype) != self._dtype):
            src.close()
            return False
        old, self._src, self._src_ident = self._src, src, ident
        if old is not None:
            old.close()
        return True

    def _subscribe_same_host(self) -> None:
        try:
            self._alive_evt = threading.Event()
            self._watch_alive()
        except BaseException:
            self.close()
            raise
        self._start(self._copy_loop, f"bridge-import-{self.key}")

    def _record_alive(self, alive: bool) -> None:
        if self._same_host:
            (self._alive_evt.set if alive else self._alive_evt.clear)()

    def _copy_loop(self) -> None:
        """Same host: while the export is alive (its liveliness token), copy each new frame of the
        exported Frames into the mirror, waiting with their own wait() (GIL released). An export
        that comes back may read other Frames of that name (a restarted game): its meta says."""
        src_version = 0
        was_alive = True  # the meta was just read
        while not self._stop.is_set():
            if not self._alive_evt.wait(self._poll):
                if was_alive:  # gone: let go of its Frames (a restarting game may create them anew)
                    was_alive = False
                    with self._lock:
                        self._release_source()
                continue
            if not was_alive:  # back: its Frames again (perhaps new ones), the latest frame at once
                if not self._follow_source():
                    self._stop.wait(self._poll)
                    continue
                was_alive = True
                src_version = 0
            else:
                try:
                    src_version = int(self._src._core.wait(src_version, self._poll))
                except TimeoutError:
                    continue
                if not self._alive_evt.is_set():  # the export went while we waited
                    continue
            with self._lock:
                if self.local.closed:
                    return
                copied = self._copy_latest()
            if copied and self.on_update is not None:
                try:
                    self.on_update(self.local)
                except Exception as e:  # kept; the link goes on
                    self.error = e

    def _release_source(self) -> None:
        if self._src is not None:
            self._src.close()
        self._src, self._src_ident = None, (-1, -1)

    def _follow_source(self) -> bool:
        """The export is back: open the Frames its meta names now (True), or not yet (False)."""
        try:
            here = _query_meta(self.session, self.key, 2.0).get("same_host") or {}
            ident = (int(here.get("creator_pid", -1)), int(here.get("created_unix_ns", -1)))
        except (TimeoutError, ValueError):
            return False
        with self._lock:
            return self._open_source(str(here.get("name")), ident)

    def _copy_latest(self) -> bool:
        """Publish the source's newest frame into the mirror (one copy, GIL released), unless the
        mirror has it already; with the lock held."""
        if self._src is None:
            return False
        pin = self._src._core.latest()
        try:
            version = int(pin.version)
            if version == 0 or (self._src_ident, version) == self._last:
                return False
            self.local._core.publish(pin, 5.0)
            self._last = (self._src_ident, version)
            return True
        finally:
            del pin

    def _apply(self, payload: memoryview) -> None:
        self.local._core.publish(payload, 5.0)  # one copy, straight into a free slot (GIL released)

    def _close_local(self) -> None:
        with self._lock:
            self._release_source()
            self.local.close()


class QueueImport(_Import):
    """A local Queue fed with every message of the remote queue ``key``, in order."""

    kind = "queue"

    def __init__(self, key: str, local_name: str, sess: Any, timeout: float = 10.0, put_timeout: Optional[float] = None,
                 ack_every: float = 0.02) -> None:
        from ._queue import Queue
        super().__init__(sess, key)
        meta = _query_meta(sess, key, timeout)
        if meta.get("kind") != "queue":
            raise ValueError(f"bridge: key {key!r} is a {meta.get('kind')}, not a queue")
        self.local = Queue.create(local_name, int(meta.get("capacity") or 1 << 20),
                                  int(meta.get("max_message") or 0) or None, exist_ok=True)
        self._put_timeout = put_timeout
        self._expected: Dict[int, int] = {}  # per exporter epoch: the next batch to deliver
        self._lock = threading.Lock()
        self.delivered = 0
        self.duplicates = 0
        try:
            self._ack = self._declared(sess.declare_publisher(f"{key}/ack"))
            self._watch_alive()
            self._declared(sess.declare_subscriber(f"{key}/q", self._on_batch))
        except BaseException:
            self.close()
            raise
        self._ack_every = ack_every
        self._start(self._acker, f"bridge-ack-{key}")

    def _send_ack(self, epoch: int, gap: bool = False) -> None:
        self._ack.put(_ACK.pack(_ACK_MAGIC, epoch, self._expected.get(epoch, 0), 1 if gap else 0))

    def _acker(self) -> None:
        while not self._stop.wait(self._ack_every):
            with self._lock:
                for epoch in list(self._expected)[-1:]:
                    self._send_ack(epoch)

    def _on_batch(self, sample: Any) -> None:
        b = sample.payload.to_bytes()
        if len(b) < _BATCH.size:
            return
        magic, epoch, seq, base, count = _BATCH.unpack_from(b)
        if magic != _BATCH_MAGIC:
            return
        with self._lock:
            # First contact with this exporter: everything from its base on is ours to deliver
            # (batches below it were acknowledged, by us or by an importer before us).
            expected = self._expected.setdefault(epoch, base)
            if seq < expected:
                self.duplicates += 1
                return
            if seq > expected:  # a batch went missing (link outage): ask for the rest again
                self._send_ack(epoch, gap=True)
                return
            off = _BATCH.size
            for _ in range(count):
                (n,) = _LEN.unpack_from(b, off)
                off += _LEN.size
                # blocks while the local queue is full: Zenoh then stops reading, the exporter's
                # window fills and its local producers see a full queue (back-pressure end to end)
                self.local.put(b[off:off + n], timeout=self._put_timeout)
                off += n
            self.delivered += count
            self._expected[epoch] = seq + 1

    def _close_local(self) -> None:
        self.local.close()


# ====================================================================== the functions
def export_state(name: str, key: Optional[str] = None, session: Any = None, *, poll: float = 0.2) -> StateExport:
    """Publish the local SharedState ``name`` under ``key`` (default :func:`default_key`) until
    ``close()``. Waits with the state's own ``wait()``, never polls the payload."""
    return StateExport(name, key or default_key(name), _need(session), poll)


def export_frames(name: str, key: Optional[str] = None, session: Any = None, *, poll: float = 0.2,
                  shared_memory: Optional[bool] = None) -> FramesExport:
    """Publish the local Frames ``name``: the latest frame, intermediate ones dropped on a slow link.
    ``shared_memory=True`` (for a session made with ``shared_memory=True``: importers on this
    machine) sends each frame in a Zenoh shared-memory buffer, one copy fewer on both sides of
    the socket; a Bridge made with ``shared_memory=True`` passes it."""
    return FramesExport(name, key or default_key(name), _need(session), poll, shared_memory)


def export_queue(name: str, key: Optional[str] = None, session: Any = None, *, window: int = 16 << 20) -> QueueExport:
    """Consume the local Queue ``name`` and send every message, in order, to one importer of ``key``."""
    return QueueExport(name, key or default_key(name), _need(session), window=window)


def import_state(key: str, local_name: str, session: Any = None, *, timeout: float = 10.0,
                 on_update: Optional[Callable[[Any], object]] = None) -> StateImport:
    """Create (or reuse) the local SharedState ``local_name`` mirroring ``key``; its
    ``info()["source"]`` says the key and whether the source is alive, in the segment itself.
    ``on_update(mirror)`` runs in Zenoh's thread once each new value is in the mirror (the
    fastest way to react, e.g. to answer through an export's ``write``); keep it short."""
    return StateImport(key, local_name, _need(session), timeout, on_update)


def import_frames(key: str, local_name: str, session: Any = None, *, timeout: float = 10.0,
                  on_update: Optional[Callable[[Any], object]] = None, same_host: bool = True) -> FramesImport:
    """Create (or reuse) local Frames ``local_name`` mirroring ``key`` (``on_update`` as for
    :func:`import_state`, with the local Frames). On the exporter's own machine (the exported
    Frames open here and are the same segment) each frame is copied straight from them: one
    copy, and only its version goes through Zenoh; ``same_host=False`` takes whole frames
    through Zenoh even then."""
    return FramesImport(key, local_name, _need(session), timeout, on_update=on_update, same_host=same_host)


def import_queue(key: str, local_name: str, session: Any = None, *, timeout: float = 10.0) -> QueueImport:
    """Create (or reuse) the local Queue ``local_name`` and feed it every message sent under ``key``."""
    return QueueImport(key, local_name, _need(session), timeout)


def _need(sess: Any) -> Any:
    if sess is None:
        raise TypeError("bridge: pass a Zenoh session (sharedstate.bridge.session(...) makes one)")
    return sess


def _kind_of(name: str) -> str:
    """The kind of the local object ``name``, found by opening it (no byte parsing here)."""
    from ._core import WrongKindError
    from ._queue import Queue
    from ._state import SharedState
    try:
        SharedState.open(name).close()
        return "state"
    except WrongKindError:
        pass
    try:
        Queue.open(name).close()
        return "queue"
    except WrongKindError:
        pass
    return "frames"


class Bridge:
    """One Zenoh session exporting and importing several objects; ``close()`` stops them all.

        with ss.bridge.Bridge(listen=["tcp/127.0.0.1:7447"]) as b:
            b.export("ControllerMemory")
            b.export("events")               # the kind is found from the object
    """

    def __init__(self, config: Any = None, *, listen: Optional[Iterable[str]] = None,
                 connect: Optional[Iterable[str]] = None, config_file: Optional[str] = None,
                 scouting: bool = False, shared_memory: Optional[bool] = None) -> None:
        zenoh = _zenoh()
        self.session = zenoh.open(config if config is not None
                                  else make_config(listen, connect, config_file, scouting, shared_memory))
        self.shared_memory = bool(shared_memory)
        self.links: List[_Link] = []

    def export(self, name: str, key: Optional[str] = None, kind: Optional[str] = None) -> _Link:
        kind = kind or _kind_of(name)
        fns: Dict[str, Callable[..., _Link]] = {"state": export_state, "queue": export_queue, "frames": export_frames}
        opts = {"shared_memory": self.shared_memory} if kind == "frames" else {}
        link = fns[kind](name, key or default_key(name), self.session, **opts)
        self.links.append(link)
        return link

    def import_(self, key: str, local_name: str, kind: Optional[str] = None, timeout: float = 10.0) -> _Link:
        if kind is None:
            kind = _query_meta(self.session, key, timeout).get("kind", "?")
        fns: Dict[str, Callable[..., _Link]] = {"state": import_state, "queue": import_queue, "frames": import_frames}
        if kind not in fns:
            raise ValueError(f"bridge: key {key!r} announces an unknown kind {kind!r}")
        link = fns[kind](key, local_name, self.session, timeout=timeout)
        self.links.append(link)
        return link

    def close(self) -> None:
        for link in reversed(self.links):
            link.close()
        self.links.clear()
        try:
            self.session.close()
        except Exception:
            pass

    def __enter__(self) -> "Bridge":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ====================================================================== the CLI
def add_cli(sub: Any) -> None:
    """``sharedstate bridge export|import``: added to the package's CLI."""
    b = sub.add_parser("bridge", help="mirror objects to and from other machines over Zenoh (sharedstate[zenoh])",
                       description="Export local objects under Zenoh keys, or import remote keys as local objects. "
                                   "Runs until Ctrl-C or SIGTERM. Listens on loopback only unless --listen says "
                                   "otherwise; multicast scouting is off unless --scouting.")
    bs = b.add_subparsers(dest="bridge_command", required=True, metavar="export|import")
    for verb in ("export", "import"):
        p = bs.add_parser(verb)
        if verb == "export":
            p.add_argument("names", nargs="+", metavar="NAME", help="local objects (state, frames or queue)")
            p.add_argument("--key", default=None, help="key of the (first) object (default sharedstate/<hostname>/<NAME>)")
        else:
            p.add_argument("key", metavar="KEY")
            p.add_argument("--as", dest="local_name", required=True, metavar="LOCAL_NAME")
            p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the exporter (default 30)")
        p.add_argument("--listen", action="append", default=None, metavar="ENDPOINT", help="e.g. tcp/0.0.0.0:7447")
        p.add_argument("--connect", action="append", default=None, metavar="ENDPOINT", help="e.g. tcp/HOST:7447")
        p.add_argument("--config", default=None, metavar="FILE", help="a Zenoh config file (JSON5)")
        p.add_argument("--scouting", action="store_true", help="allow multicast/gossip scouting")
        p.add_argument("--zenoh-shm", dest="shared_memory", action="store_true", default=None,
                       help="turn on Zenoh's shared-memory transport between peers on this machine")
        p.set_defaults(func=cmd_bridge)


def cmd_bridge(args: argparse.Namespace) -> int:
    try:
        br = Bridge(listen=args.listen, connect=args.connect, config_file=args.config, scouting=args.scouting,
                    shared_memory=args.shared_memory)
    except ImportError as e:
        print(f"sharedstate bridge: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        if args.bridge_command == "export":
            for i, name in enumerate(args.names):
                link = br.export(name, args.key if i == 0 else None)
                print(f"exporting {link.kind} {name!r} as {link.key!r}", flush=True)
        else:
            link = br.import_(args.key, args.local_name, timeout=args.timeout)
            print(f"importing {link.kind} {args.key!r} as {args.local_name!r}", flush=True)
        while not stop.wait(0.2):
            for link in br.links:
                if link.error is not None:
                    print(f"sharedstate bridge: {link!r} failed: {link.error}", file=sys.stderr)
                    return 1
    except KeyboardInterrupt:
        pass
    except (OSError, ValueError, TimeoutError) as e:
        print(f"sharedstate bridge: {e}", file=sys.stderr)
        return 1
    finally:
        br.close()
    return 0
