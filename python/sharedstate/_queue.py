"""Queue and Mailslot: ordered messages between processes, many writers and one reader.

    q = Queue.create("events", capacity=1 << 20)      # in one process (C++ or Python)
    q.put(b"button A down")                           # any process: blocks only while full
    q = Queue.open("events")                          # in the consumer
    msg = q.get(timeout=1.0)                          # bytes; TimeoutError if none came
    with q.get_view() as mv:                          # zero-copy, consumed when the block ends
        handle(mv)

    box = Mailslot("log")                              # the reader
    MailslotWriter("log").send(b"hello")               # any number of writers; never blocks
    box.recv(timeout=1.0); box.info()                  # (next size or None, count or None)
"""
from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, Optional

from . import _core

__all__ = ["Mailslot", "MailslotWriter", "Queue"]

_DEFAULT_MAILSLOT_MAX = 64 * 1024
_DEFAULT_MAILSLOT_CAPACITY = 1 << 20


class Queue(_core.QueueCore):
    """A bounded, ordered queue of variable-length messages in a named shared-memory segment.

    Any number of producers (processes, threads) may ``put``; one process consumes
    (``get``, ``get_into``, ``get_view``): a second consuming process is a ValueError while
    the first lives. Order is the order in which puts reserved their room. A producer killed
    in the middle of a put never wedges the queue: its half-written message is skipped,
    never delivered torn. Neither side makes a system call unless the other is asleep.

    The compiled base class does the hot calls (``put``, ``get``, ``get_into``, ``empty``,
    ``len()``); this class adds construction, the zero-copy views and context management.
    """

    __slots__ = ("_name",)
    _name: str

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, name: str, capacity: int = 1 << 20, max_message: Optional[int] = None, *,
               exist_ok: bool = False, persistent: bool = False) -> "Queue":
        """Create the queue ``name`` with a ring of ``capacity`` bytes (rounded up to a power
        of two, 256 bytes .. 1 GiB; each message takes 16 bytes plus its size rounded up to 16).

        ``max_message`` (default: the largest that fits, ``capacity - 16``) bounds a put.
        FileExistsError if it exists and is in use (``exist_ok=True`` opens it instead). The
        queue goes away when its last holder closes or dies, unless ``persistent=True``.
        """
        if capacity <= 0:
            raise ValueError(f"queue {name!r}: capacity must be > 0, got {capacity}")
        if max_message is not None and max_message <= 0:
            raise ValueError(f"queue {name!r}: max_message must be > 0, got {max_message}")
        self = cls.__new__(cls)
        _core._queue_create(self, name, int(capacity), int(max_message or 0), exist_ok, persistent)
        self._name = name
        return self

    @classmethod
    def open(cls, name: str) -> "Queue":
        """Open an existing queue (FileNotFoundError if there is none; a SharedState's name
        is a WrongKindError)."""
        self = cls.__new__(cls)
        _core._queue_open(self, name)
        self._name = name
        return self

    # ------------------------------------------------------------------ zero-copy
    def get_view(self, timeout: Optional[float] = None) -> "_MessageView":
        """The next message in place, as a read-only memoryview, consumed when the block ends
        (also when it raises)::

            with q.get_view(timeout=1.0) as mv:
                handle(mv)

        Waits like ``get`` (on entering the block). Use the view inside the block only: after
        it the bytes belong to the producers again."""
        return _MessageView(self, timeout)

    @contextlib.contextmanager
    def put_view(self, size: int, timeout: Optional[float] = None) -> Iterator[memoryview]:
        """Zero-copy put: room for a ``size``-byte message as a writable memoryview, published
        when the block ends; dropped (skipped by the consumer) if the block raises. Fill it
        promptly: the consumer waits for it, and later messages queue behind it."""
        s = _core._queue_slot(self, int(size), timeout)
        mv = memoryview(s)
        ok = False
        try:
            yield mv
            ok = True
        finally:
            try:
                mv.release()
            except BufferError:
                pass
            if ok:
                s.commit()
            else:
                s.cancel()

    # ------------------------------------------------------------------ facts and lifetime
    @property
    def name(self) -> str:
        return str(self._name)

    @property
    def closed(self) -> bool:
        return bool(_core._queue_closed(self))

    @property
    def capacity(self) -> int:
        """Ring bytes."""
        return int(_core._queue_info(self)["capacity"])

    @property
    def max_message(self) -> int:
        """The largest message a put accepts."""
        return int(_core._queue_info(self)["max_message"])

    def info(self) -> Dict[str, Any]:
        """A dict: capacity, max_message, count, used_bytes, skipped (dead producers'
        messages dropped), recoveries, consumer_pid, creator_pid, ..."""
        return dict(_core._queue_info(self))

    def set_spin(self, seconds: float) -> None:
        """How long a blocking call spins before sleeping in the kernel (default 50 µs)."""
        _core._queue_set_spin(self, seconds)

    async def get_async(self, timeout: Optional[float] = None) -> bytes:
        """``await q.get_async(timeout=None)``: get() for asyncio; a cancelled call consumes nothing."""
        from ._aio import queue_get_async
        return await queue_get_async(self, timeout)

    def close(self) -> None:
        """Stop holding the queue. The last holder of a non-persistent queue removes it."""
        _core._queue_close(self)

    def unlink(self) -> None:
        """Remove the name now (holders keep their mapping). No error if already gone."""
        try:
            _core.queue_unlink(self._name)
        except FileNotFoundError:
            pass

    def __enter__(self) -> "Queue":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __bool__(self) -> bool:  # a Queue is an object, not a container test
        return True

    def __repr__(self) -> str:
        if self.closed:
            return f"<Queue {self._name!r} closed>"
        i = _core._queue_info(self)
        return f"<Queue {self._name!r} {len(self)} messages, {i['used_bytes']}/{i['capacity']} bytes>"


class _MessageView:
    """The context manager of Queue.get_view (a class, not a generator: it is on a hot path)."""

    __slots__ = ("_q", "_timeout", "_v", "_mv")

    def __init__(self, q: Queue, timeout: Optional[float]) -> None:
        self._q = q
        self._timeout = timeout

    def __enter__(self) -> memoryview:
        self._v = _core._queue_view(self._q, self._timeout)
        self._mv = memoryview(self._v)
        return self._mv

    def __exit__(self, *exc: Any) -> None:
        try:
            self._mv.release()
        except BufferError:  # the caller kept slices: they may now see new bytes
            pass
        self._v.commit()


class Mailslot(_core.MailslotCore):
    """The reader of a mailslot: many writers, one reader, whole messages.

    Windows: the OS's mailslot ``\\\\.\\mailslot\\NAME``. Linux: a shared-memory Queue named
    ``NAME.mailslot`` of ``capacity`` bytes (Linux only), so thousands of messages wait for
    a slow reader and writers never block. Each writer's messages arrive in its order.
    FileExistsError if another process already reads ``name``.
    """

    def __init__(self, name: str, max_message: int = _DEFAULT_MAILSLOT_MAX,
                 capacity: int = _DEFAULT_MAILSLOT_CAPACITY) -> None:
        if max_message <= 0:
            raise ValueError(f"mailslot {name!r}: max_message must be > 0, got {max_message}")
        super().__init__(name, max_message, capacity)

    async def recv_async(self, timeout: Optional[float] = None) -> bytes:
        """``await box.recv_async(timeout=None)``: recv() for asyncio; a cancelled call consumes nothing."""
        from ._aio import mailslot_recv_async
        return await mailslot_recv_async(self, timeout)

    def __enter__(self) -> "Mailslot":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return "<Mailslot closed>"
        return f"<Mailslot {self.name!r} max_message={self.max_message}>"


class MailslotWriter(_core.MailslotWriterCore):
    """A writer of the mailslot ``name`` (FileNotFoundError if nobody reads it).

    ``send(data, timeout=0.0)`` never waits while there is room. When the reader has fallen
    ``capacity`` bytes behind (Linux), it waits at most ``timeout`` seconds and then raises
    TimeoutError: a message is never dropped silently. A reader that closed or died is
    BrokenPipeError.
    """

    def __enter__(self) -> "MailslotWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return "<MailslotWriter closed>"
        return f"<MailslotWriter {self.name!r}>"
