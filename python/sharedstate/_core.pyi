# Type stubs for sharedstate._core, the compiled module (hand-kept: tests/test_typing.py
# checks that every name here exists in the module and every module name is here).
# The module is private: use the sharedstate package, whose classes derive from these.
from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ClassVar, Final, Literal, TypeVar

import numpy as np
from typing_extensions import Buffer, TypeAlias

_T = TypeVar("_T")

__version__: str
PLATFORM: Final[Literal["posix", "win32"]]

# ---------------------------------------------------------------- exceptions
class LayoutMismatchError(ValueError):
    """The segment's layout is not the one asked for."""

class CorruptSegmentError(ValueError):
    """The segment's header fails validation; nothing in it was used."""

class WrongKindError(CorruptSegmentError):
    """The name belongs to another kind of sharedstate object."""

# What the buffer-taking calls accept. bytes, bytearray, memoryview, array.array, mmap and
# ctypes objects are Buffers on every Python; numpy arrays and scalars are Buffers for mypy
# only on Python 3.12+ (numpy's stubs declare __buffer__ there), so they are named as well.
_ReadableBuffer: TypeAlias = Buffer | np.ndarray[Any, Any] | np.generic  # a message, read only
_WritableBuffer: TypeAlias = Buffer | np.ndarray[Any, Any]               # a destination, written in place

# A field as the bindings exchange it: (name, kind, itemsize, offset, count),
# kind one of 'i' 'u' 'f' 'b' 'S' 'V'.
_FieldTuple = tuple[str, str, int, int, int]

# ---------------------------------------------------------------- SharedState's compiled half
class StateCore:
    """The compiled half of sharedstate.SharedState (hot calls through CPython's own
    calling conventions)."""

    @property
    def version(self) -> int:
        """Number of committed writes."""

    def read(self) -> Any:
        """One consistent snapshot: a named tuple of the layout's fields (its type is made per
        layout at run time, so it is typed Any; attribute and index access both work)."""

    def read_into(self, buf: _WritableBuffer, /) -> int:
        """A consistent copy into a writable buffer of layout.size bytes; returns the version."""

    def write(self, *values: Any, **fields: Any) -> None:
        """write(**fields) or write(values): one atomic update; fields not named keep their value."""

    def wait(self, since: int | None = None, timeout: float | None = None, *, spin: float | None = None) -> int:
        """Block until version > since (default: the version now) and return the new version.
        GIL released, Ctrl-C interrupts; TimeoutError after `timeout` seconds."""

    # Each payload field is an attribute (a Field descriptor on the per-layout subclass),
    # read and written atomically: st.x; st.x = 5.
    def __getattr__(self, name: str) -> Any: ...
    def __setattr__(self, name: str, value: Any) -> None: ...

class Field:
    """Field(position, name): a SharedState payload field, read and written atomically."""

    def __init__(self, position: int, name: str, /) -> None: ...
    def __get__(self, obj: StateCore | None, owner: type | None = None, /) -> Any: ...
    def __set__(self, obj: StateCore, value: Any, /) -> None: ...

class MappedBuffer:
    """A buffer over a live mapping; it keeps the mapping alive after close()."""

    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...

# ---------------------------------------------------------------- state (private helpers)
def _state_create(self: StateCore, name: str, fields: Sequence[_FieldTuple], size: int, align: int,
                  exist_ok: bool, persistent: bool, source_key: str = ..., /) -> None: ...
def _state_set_source_alive(self: StateCore, alive: bool, /) -> None: ...
def _state_open(self: StateCore, name: str, fields: Sequence[_FieldTuple] | None, size: int, align: int, /) -> None: ...
def _state_attach_raw(self: StateCore, name: str, fields: Sequence[_FieldTuple], size: int, align: int,
                      create: bool, /) -> None: ...
def _state_set_snapshot_type(self: StateCore, type: type[tuple[Any, ...]] | None, /) -> None: ...
def _state_set_arrays(self: StateCore, arrays: tuple[Any, tuple[tuple[Any, tuple[int, ...]] | None, ...]] | None, /) -> None: ...
def _state_layout(self: StateCore, /) -> tuple[list[_FieldTuple], int, int]: ...
def _state_close(self: StateCore, /) -> None: ...
def _state_closed(self: StateCore, /) -> bool: ...
def _state_buffer(self: StateCore, writable: bool, /) -> MappedBuffer: ...
def _state_info(self: StateCore, /) -> dict[str, Any]: ...
def _state_set_lock_timeout(self: StateCore, seconds: float, /) -> None: ...
def _state_lock_timeout(self: StateCore, /) -> float: ...
def _state_name(self: StateCore, /) -> str: ...

# ---------------------------------------------------------------- channels
DEFAULT_MAX_MESSAGE: Final[int]

class Pipe:
    """One end of a message pipe: every send() is one recv() on the other end, 0 bytes to
    max_message. Get one with Pipe.connect(name) or PipeServer(name).accept()."""

    @classmethod
    def connect(cls, name: str, timeout: float | None = None, max_message: int | None = None) -> Pipe:
        """Connects to the PipeServer NAME. Nobody serving: FileNotFoundError at once
        (timeout=None), or retried until the timeout (TimeoutError)."""

    def send(self, data: _ReadableBuffer, timeout: float | None = None) -> None:
        """Sends one whole message. Longer than max_message: ValueError. Peer gone: BrokenPipeError."""

    def recv_async(self, timeout: float | None = None) -> Coroutine[Any, Any, bytes]: ...
    def recv(self, timeout: float | None = None) -> bytes:
        """The next whole message. TimeoutError; EOFError when the peer closed; BrokenPipeError when it died."""

    def recv_into(self, buf: _WritableBuffer, timeout: float | None = None) -> int:
        """Copies the next message into buf and returns its size (too large: ValueError, not consumed)."""

    def peek(self) -> bytes | None:
        """The next message without consuming it, or None. Never blocks."""

    def available(self) -> int:
        """The size of the next message, 0 if none. Never blocks."""

    def close(self) -> None: ...
    def fileno(self) -> int: ...
    def __enter__(self) -> Pipe: ...
    def __exit__(self, *exc: object) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def max_message(self) -> int: ...
    @property
    def closed(self) -> bool: ...

class PipeServer:
    """A named pipe server: accept() returns a Pipe per client, any number at once.
    FileExistsError if a live server has the name."""

    def __init__(self, name: str, max_message: int | None = None) -> None: ...
    def accept_async(self, timeout: float | None = None) -> Coroutine[Any, Any, Pipe]: ...
    def accept(self, timeout: float | None = None) -> Pipe:
        """The next client (TimeoutError on timeout)."""

    def close(self) -> None:
        """Stops listening and frees the name; accepted pipes stay connected."""

    def __enter__(self) -> PipeServer: ...
    def __exit__(self, *exc: object) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def path(self) -> str:
        """The OS address: the socket file (Linux) or \\\\.\\pipe\\NAME (Windows)."""

    @property
    def max_message(self) -> int: ...
    @property
    def closed(self) -> bool: ...

class Semaphore:
    """A named counting semaphore shared between processes."""

    MAX_VALUE: ClassVar[int]

    @staticmethod
    def create(name: str, initial: int = 0, maximum: int | None = None, persistent: bool = False) -> Semaphore:
        """FileExistsError if NAME exists."""

    @staticmethod
    def open(name: str, persistent: bool = False) -> Semaphore:
        """FileNotFoundError if NAME does not exist."""

    def acquire_async(self, timeout: float | None = None) -> Coroutine[Any, Any, bool]: ...
    def acquire(self, timeout: float | None = None) -> bool:
        """True when acquired, False on timeout."""

    def release(self, n: int = 1) -> None:
        """Adds n to the count. Past the maximum: ValueError."""

    def close(self) -> None: ...
    def unlink(self) -> bool:
        """Removes the name now (openers keep their handle). False if it was already gone."""

    def __enter__(self) -> Semaphore: ...
    def __exit__(self, *exc: object) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def closed(self) -> bool: ...

# ---------------------------------------------------------------- queue and mailslot
class QueueCore:
    """The compiled half of sharedstate.Queue (hot calls through CPython's own conventions)."""

    def put(self, data: _ReadableBuffer, timeout: float | None = None) -> None:
        """Append one message; blocks while the queue is full (TimeoutError; 0: do not wait)."""

    def get(self, timeout: float | None = None) -> bytes:
        """The oldest message; blocks while empty (TimeoutError)."""

    def get_into(self, buf: _WritableBuffer, timeout: float | None = None) -> int:
        """Copy the oldest message into a writable buffer; its length (too small: ValueError, not consumed)."""

    def empty(self) -> bool:
        """No message (ready or being written) is queued."""

    def __len__(self) -> int: ...

class QueueView:
    """The next message in place (buffer protocol), until commit() or abandon()."""

    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def commit(self) -> None:
        """Consume the message (its bytes may be reused)."""

    def abandon(self) -> None:
        """Leave the message queued."""

class QueueSlot:
    """Room for one message being put in place (writable buffer), until commit() or cancel()."""

    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def commit(self) -> None:
        """Publish the message."""

    def cancel(self) -> None:
        """Drop it: the consumer skips it."""

def _queue_create(self: QueueCore, name: str, capacity: int, max_message: int, exist_ok: bool,
                  persistent: bool, /) -> None: ...
def _queue_open(self: QueueCore, name: str, /) -> None: ...
def _queue_close(self: QueueCore, /) -> None: ...
def _queue_closed(self: QueueCore, /) -> bool: ...
def _queue_name(self: QueueCore, /) -> str: ...
def _queue_info(self: QueueCore, /) -> dict[str, Any]: ...
def _queue_set_spin(self: QueueCore, seconds: float, /) -> None: ...
def _queue_view(self: QueueCore, timeout: float | None, /) -> QueueView: ...
def _queue_slot(self: QueueCore, size: int, timeout: float | None, /) -> QueueSlot: ...
def queue_unlink(name: str) -> None:
    """Remove the queue's name now (FileNotFoundError if missing); holders keep their mapping."""

class MailslotCore:
    """The compiled half of sharedstate.Mailslot (the reader)."""

    def __init__(self, name: str, max_message: int = ..., capacity: int = ...) -> None: ...
    def recv(self, timeout: float | None = None) -> bytes:
        """The next whole message (TimeoutError)."""

    def recv_into(self, buf: _WritableBuffer, timeout: float | None = None) -> int:
        """Copies the next message into buf; its size."""

    def info(self) -> tuple[int | None, int | None]:
        """(size of the next message or None, number of messages waiting or None)."""

    def close(self) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def max_message(self) -> int: ...
    @property
    def closed(self) -> bool: ...

class MailslotWriterCore:
    """The compiled half of sharedstate.MailslotWriter (FileNotFoundError if nobody reads NAME)."""

    def __init__(self, name: str) -> None: ...
    def send(self, data: _ReadableBuffer, timeout: float | None = 0.0) -> None:
        """One message; never waits while there is room (TimeoutError when the reader fell
        `capacity` bytes behind for `timeout` seconds; BrokenPipeError when it is gone)."""

    def close(self) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def closed(self) -> bool: ...

# ---------------------------------------------------------------- WaitSet (bind_waitset.cpp)
class WaitSet:
    """Wait on many objects at once; the ready members come back in the order added."""

    def __init__(self) -> None: ...
    def add(self, obj: object, since: int | None = None) -> None: ...
    def remove(self, obj: object) -> None:
        """KeyError if `obj` is not a member."""
    def discard(self, obj: object) -> None: ...
    def wait(self, timeout: float | None = None) -> list[Any]:
        """The ready members (never empty); TimeoutError; timeout=0 polls."""
    def fileno(self) -> int:
        """Linux: readable while a member is ready (not on Windows: see `handle`)."""
    @property
    def handle(self) -> int:
        """Windows: a waitable event handle (not on Linux: see `fileno`)."""
    @property
    def members(self) -> list[Any]: ...
    def __len__(self) -> int: ...
    def __contains__(self, obj: object) -> bool: ...

def _wait_fd(obj: object) -> int:
    """The descriptor an event loop can watch for obj (Linux pipes and servers), else -1."""

# ---------------------------------------------------------------- segments by name
def state_unlink(name: str) -> None:
    """Remove the name now (FileNotFoundError if missing); holders keep their mapping."""

def state_remove_if_stale(name: str) -> bool:
    """Remove a state/queue segment whose holders have all exited (not persistent). True if removed."""

def segment_exists(name: str, /) -> bool: ...
def segment_held(name: str, /) -> bool:
    """Is any process holding it? (a brief non-blocking lock probe on Linux) False if missing."""

# ---------------------------------------------------------------- frames (sharedstate.Frames)
class FrameLoan:
    """A writable buffer over a loaned frame slot (the writer lock is held until commit/cancel)."""

    @property
    def version(self) -> int | None: ...
    def commit(self) -> int: ...
    def cancel(self) -> None: ...
    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: object) -> None: ...

class FramePin:
    """A read-only buffer over a pinned frame; unpinned when the object (and every array over
    it) is gone."""

    @property
    def version(self) -> int: ...
    @property
    def commit_ns(self) -> int: ...
    @property
    def slot(self) -> int: ...
    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...

class FramesCore:
    """The compiled handle of sharedstate.Frames."""

    @staticmethod
    def create(name: str, shape: Sequence[int], fields: Sequence[_FieldTuple], item_size: int, align: int,
               scalar: bool, readers: int, exist_ok: bool, persistent: bool, /) -> FramesCore: ...
    @staticmethod
    def open(name: str, /) -> FramesCore: ...
    @staticmethod
    def unlink(name: str, /) -> None: ...
    def spec(self) -> tuple[tuple[int, ...], list[_FieldTuple], int, int, bool]: ...
    def loan(self, timeout: float | None = None) -> FrameLoan: ...
    def loan_block(self, owner: Any, timeout: float | None = None) -> FrameLoan: ...
    def publish(self, data: Buffer, timeout: float | None = None) -> int: ...
    def latest(self) -> FramePin: ...
    @property
    def version(self) -> int: ...
    def wait(self, since: int, timeout: float | None = None, spin: float | None = None) -> int: ...
    def info(self) -> dict[str, Any]: ...
    @property
    def name(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def close(self) -> None: ...

def monotonic_ns() -> int:
    """The library's monotonic clock in ns (FramePin.commit_ns's clock), the same in every process."""

def _with_bytearray(src: Buffer, fn: Callable[[bytearray], _T]) -> _T:
    """fn(ba), ba a bytearray borrowing src's bytes (no copy; fn only reads it), emptied after
    the call. The bridge's way into Zenoh's shm buffers, which take only bytes/bytearray."""

# ---------------------------------------------------------------- looking without holding (inspect.hpp)
PEEK_KINDS: Final[tuple[str, ...]]
"""The segment kinds a Peek recognises by magic ("state", "queue", ...)."""
MAILSLOT_SEGMENT_SUFFIX: Final[str]
"""Linux: the Queue segment behind the mailslot NAME is NAME + this."""

class Peek:
    """A read-only look at the segment NAME: mapped read-only, no holder lock, so it never
    keeps a segment alive or removes it (Windows: opened like any reader, held while open).
    FileNotFoundError if NAME does not exist."""

    def __init__(self, name: str) -> None: ...
    def describe(self, payload: bool = True) -> dict[str, Any]:
        """The object now, validated with open()'s code. Always: name, kind (a PEEK_KINDS
        entry or "other"), size, mode, problem (None, or why validation failed: then
        nothing else is reported), holders_known, holders_alive, holder_pids. "other":
        first_bytes. A valid header adds format_version, persistent, creator_pid,
        created_unix_ns and the kind's facts (ints, str, or owners as None | {"pid", "alive"}):
        states header_size, payload_size, payload_align, slot_stride, segment_size,
        writer_lock, last_writer, recoveries, waiters, version, layout (list of {name,
        kind, itemsize, offset, count}) and, with payload=True, payload (a consistent copy,
        bytes); queues header_size, segment_size, capacity, max_message, pending,
        used_bytes, puts, gets, skipped, recoveries, waiters, consumer."""

    def still_named(self) -> bool:
        """Does NAME still name this object? (False once removed or replaced.)"""

    def close(self) -> None: ...
    def __enter__(self) -> Peek: ...
    def __exit__(self, *exc: object) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def closed(self) -> bool: ...

def peek(name: str, payload: bool = True) -> dict[str, Any]:
    """Peek(name).describe(payload), then close."""

def file_holders(path: str) -> list[int] | None:
    """Pids holding a flock on the file at PATH (Linux /proc/locks); None if the OS cannot tell."""
