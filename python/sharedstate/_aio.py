"""asyncio for sharedstate: ``await st.wait_async()``, ``await q.get_async()``, ...

    v = await st.wait_async(since=v, timeout=1.0)     # SharedState (and Frames): the new version
    msg = await q.get_async(timeout=None)             # Queue
    msg = await box.recv_async()                      # Mailslot
    msg = await conn.recv_async()                     # Pipe
    conn = await srv.accept_async()                   # PipeServer
    ok = await sem.acquire_async(timeout=0.5)         # Semaphore: True, or False on timeout

How it waits. One watcher per event loop holds one WaitSet with every object some coroutine
awaits. On Linux the loop watches the WaitSet's descriptor (``loop.add_reader(ws.fileno())``):
no Python thread at all, and the WaitSet's one notifier thread is the only extra thread however
many coroutines wait. A Pipe or PipeServer on Linux is watched through its own socket
(``add_reader``), no thread involved. Where the loop cannot watch a descriptor (Windows, or a loop without
add_reader) one daemon thread per loop waits in ``ws.wait()`` and hands the ready objects to the
loop (``call_soon_threadsafe``).

Cancellation. A waiting coroutine holds only a wake-up token: the message is taken (``get``,
``recv``, ``accept``, ``acquire`` with ``timeout=0``) by the coroutine itself, in the loop thread,
after it resumes. A coroutine cancelled before or after its wake-up consumes nothing; one
cancelled after being woken passes the wake-up on to the next waiter, so no message waits
unnoticed. Timeouts raise TimeoutError, as the blocking calls do.
"""
from __future__ import annotations

import asyncio
import collections
import sys
import threading
import weakref
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from . import _core

__all__ = ["attach"]

_VERSION, _TAKE = 0, 1


class _Entry:
    __slots__ = ("obj", "kind", "futs", "fd")

    def __init__(self, obj: Any, kind: int, fd: Optional[int]) -> None:
        self.obj = obj
        self.kind = kind
        self.futs: Deque[Tuple["asyncio.Future[Any]", int]] = collections.deque()  # (future, since)
        self.fd = fd  # watched by the loop directly (a Pipe on Linux), else None: in the WaitSet


class _LoopWatcher:
    """Everything one event loop awaits: one WaitSet, at most one thread."""

    IDLE_CLOSE = 2.0  # seconds without waiters before the WaitSet (and its thread) goes
    USE_READER = True  # False: the helper-thread way even where the loop can watch ws.fileno() (tests)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # The loop holds us (reader callback, timers); we hold it only weakly, so that the
        # WeakKeyDictionary entry (and with it the WaitSet and its thread) goes with the loop.
        self._loop = weakref.ref(loop)
        self.ws = _core.WaitSet()
        self.idle_gen = 0
        self.idle_pending = False
        self.entries: Dict[int, _Entry] = {}
        self.thread: Optional[threading.Thread] = None
        self.reader = False
        if sys.platform != "win32" and self.USE_READER:
            try:
                loop.add_reader(self.ws.fileno(), self._on_ready)
                self.reader = True
            except (NotImplementedError, AttributeError, ValueError):
                self.reader = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop()
        if loop is None:  # pragma: no cover - only reachable from a dead loop's callbacks
            raise RuntimeError("the event loop is gone")
        return loop

    # ---------------------------------------------------------------- registration
    def wait_token(self, obj: Any, kind: int, since: int, direct_fd: Optional[int]) -> "asyncio.Future[Any]":
        fut = self.loop.create_future()
        self.idle_gen += 1
        e = self.entries.get(id(obj))
        if e is None:
            fd = direct_fd if direct_fd is not None and sys.platform != "win32" else None
            e = _Entry(obj, kind, fd)
            if fd is not None:
                try:
                    self.loop.add_reader(fd, self._serve, e)
                except (NotImplementedError, ValueError):
                    e.fd = None
            if e.fd is None:
                if kind == _VERSION:
                    self.ws.add(obj, since=since)
                else:
                    self.ws.add(obj)
                if not self.reader:
                    self._start_thread()
            self.entries[id(obj)] = e
        e.futs.append((fut, since))
        return fut

    def forget(self, obj: Any, fut: "asyncio.Future[Any]") -> None:
        e = self.entries.get(id(obj))
        if e is None:
            return
        try:
            e.futs.remove(next(p for p in e.futs if p[0] is fut))
        except (StopIteration, ValueError):
            pass
        self._drop_if_idle(e)

    def wake_next(self, obj: Any) -> None:
        """A woken coroutine was cancelled before it took anything: wake the next one."""
        e = self.entries.get(id(obj))
        if e is not None:
            self._serve(e)

    def _drop_if_idle(self, e: _Entry) -> None:
        while e.futs and e.futs[0][0].done():
            e.futs.popleft()
        if e.futs:
            return
        self.entries.pop(id(e.obj), None)
        if e.fd is not None:
            self.loop.remove_reader(e.fd)
        else:
            self.ws.discard(e.obj)
        if not self.entries and not self.idle_pending and not self.loop.is_closed():
            self.idle_pending = True
            self.loop.call_later(self.IDLE_CLOSE, self._close_if_idle, self.idle_gen)

    def _close_if_idle(self, gen: int) -> None:
        """Nothing awaited for a while: drop the WaitSet, its descriptor and its thread."""
        self.idle_pending = False
        if self.entries:
            return
        if gen != self.idle_gen:  # used meanwhile: look again later
            self._drop_later()
            return
        with _watchers_lock:
            if _watchers.get(self.loop) is self:
                del _watchers[self.loop]
        if self.reader:
            self.loop.remove_reader(self.ws.fileno())
            self.reader = False
        self.ws = _core.WaitSet()  # the old one (and its notifier thread) goes with its last reference

    def _drop_later(self) -> None:
        if not self.idle_pending and not self.loop.is_closed():
            self.idle_pending = True
            self.loop.call_later(self.IDLE_CLOSE, self._close_if_idle, self.idle_gen)

    # ---------------------------------------------------------------- readiness
    def _on_ready(self) -> None:
        try:
            ready = self.ws.wait(0)
        except TimeoutError:
            return
        self._dispatch(ready)

    def _dispatch(self, ready: List[Any]) -> None:
        for obj in ready:
            e = self.entries.get(id(obj))
            if e is not None and e.obj is obj:
                self._serve(e)

    def _serve(self, e: _Entry) -> None:
        if e.kind == _VERSION:
            try:
                v = e.obj.version
            except Exception as exc:  # closed: every waiter hears it
                for f, _ in e.futs:
                    if not f.done():
                        f.set_exception(exc)
                e.futs.clear()
            else:
                keep: Deque[Tuple["asyncio.Future[Any]", int]] = collections.deque()
                for f, since in e.futs:
                    if f.done():
                        continue
                    if v > since:
                        f.set_result(v)
                    else:
                        keep.append((f, since))
                e.futs = keep
        else:
            # One wake-up per report: the woken coroutine takes the message itself.
            while e.futs:
                f, _ = e.futs.popleft()
                if not f.done():
                    f.set_result(None)
                    break
        self._drop_if_idle(e)

    # ---------------------------------------------------------------- no descriptor: one thread
    def _start_thread(self) -> None:
        if self.thread is not None:
            return
        ref = weakref.ref(self)
        ws = self.ws
        loop_ref = self._loop

        def run() -> None:
            done = threading.Event()
            while True:
                try:
                    ready = ws.wait(1.0)  # at most a second to notice that the loop is gone
                except TimeoutError:
                    loop = loop_ref()
                    if loop is None or loop.is_closed() or ref() is None or ref().ws is not ws:  # type: ignore[union-attr]
                        return
                    del loop
                    continue
                except BaseException:
                    return
                me = ref()
                loop = loop_ref()
                if me is None or loop is None or loop.is_closed():
                    return
                done.clear()
                watcher: _LoopWatcher = me  # narrowed here: older mypy does not narrow in a default

                def hand_over(r: List[Any] = ready, w: _LoopWatcher = watcher) -> None:
                    try:
                        w._dispatch(r)
                    finally:
                        done.set()

                try:
                    loop.call_soon_threadsafe(hand_over)
                except RuntimeError:  # the loop is closed
                    return
                del me
                while not done.wait(0.5):
                    if loop.is_closed():
                        return
                del loop

        self.thread = threading.Thread(target=run, name="sharedstate-aio", daemon=True)
        self.thread.start()


_watchers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopWatcher]" = weakref.WeakKeyDictionary()
_watchers_lock = threading.Lock()


def _watcher() -> _LoopWatcher:
    loop = asyncio.get_running_loop()
    with _watchers_lock:
        w = _watchers.get(loop)
        if w is None:
            w = _watchers[loop] = _LoopWatcher(loop)
    return w


def _expire(fut: "asyncio.Future[Any]", what: str) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError(what))


async def _await_token(w: _LoopWatcher, obj: Any, fut: "asyncio.Future[Any]", deadline: Optional[float],
                       what: str, kind: int) -> Any:
    h = None
    if deadline is not None:
        h = w.loop.call_at(deadline, _expire, fut, what)
    try:
        return await fut
    except asyncio.CancelledError:
        if kind == _TAKE and fut.done() and not fut.cancelled() and fut.exception() is None:
            w.wake_next(obj)  # woken, then cancelled before taking: pass the wake-up on
        raise
    finally:
        if h is not None:
            h.cancel()
        if not fut.done():
            fut.cancel()
        w.forget(obj, fut)


def _deadline(timeout: Optional[float]) -> Optional[float]:
    if timeout is None:
        return None
    if timeout != timeout or timeout < 0:
        raise ValueError("timeout must be None or >= 0 seconds")
    return asyncio.get_running_loop().time() + timeout


async def _take(obj: Any, attempt: Callable[[], Any], timeout: Optional[float], what: str,
                direct_fd: Optional[int] = None) -> Any:
    deadline = _deadline(timeout)
    w = _watcher()
    while True:
        try:
            return attempt()
        except TimeoutError:
            pass
        if deadline is not None and w.loop.time() >= deadline:
            raise TimeoutError(what)
        fut = w.wait_token(obj, _TAKE, 0, direct_fd)
        await _await_token(w, obj, fut, deadline, what, _TAKE)


def _direct_fd(obj: Any) -> Optional[int]:
    """Linux pipes and servers are descriptors the loop watches itself (no thread at all)."""
    if sys.platform == "win32":
        return None
    fd = _core._wait_fd(obj)
    return fd if fd >= 0 else None


# ---------------------------------------------------------------- the methods
async def state_wait_async(self: Any, since: Optional[int] = None, timeout: Optional[float] = None) -> int:
    """await st.wait_async(since=None, timeout=None) -> version: like st.wait(), for asyncio."""
    v = self.version
    if since is None:
        since = v
    since = int(since)
    if v > since:
        return int(v)
    deadline = _deadline(timeout)
    w = _watcher()
    what = f"wait_async on {self!r}: no write after version {since}"
    fut = w.wait_token(self, _VERSION, since, None)
    return int(await _await_token(w, self, fut, deadline, what, _VERSION))


async def queue_get_async(self: Any, timeout: Optional[float] = None) -> bytes:
    """await q.get_async(timeout=None) -> bytes: like q.get(); a cancelled call consumes nothing."""
    msg: bytes = await _take(self, lambda: self.get(timeout=0), timeout, f"get_async from {self!r}: empty")
    return msg


async def mailslot_recv_async(self: Any, timeout: Optional[float] = None) -> bytes:
    """await box.recv_async(timeout=None) -> bytes: like box.recv()."""
    msg: bytes = await _take(self, lambda: self.recv(timeout=0), timeout, f"recv_async from {self!r}: no message")
    return msg


async def pipe_recv_async(self: Any, timeout: Optional[float] = None) -> bytes:
    """await conn.recv_async(timeout=None) -> bytes: like conn.recv() (EOFError / BrokenPipeError)."""
    msg: bytes = await _take(self, lambda: self.recv(timeout=0), timeout, f"recv_async on {self!r}: no message",
                             _direct_fd(self))
    return msg


async def server_accept_async(self: Any, timeout: Optional[float] = None) -> Any:
    """await srv.accept_async(timeout=None) -> Pipe: like srv.accept()."""
    return await _take(self, lambda: self.accept(timeout=0), timeout, f"accept_async on {self!r}: no client",
                       _direct_fd(self))


async def semaphore_acquire_async(self: Any, timeout: Optional[float] = None) -> bool:
    """await sem.acquire_async(timeout=None) -> bool: like sem.acquire() (False on timeout)."""

    def attempt() -> bool:
        if self.acquire(0):
            return True
        raise TimeoutError

    try:
        ok: bool = await _take(self, attempt, timeout, "acquire_async")
        return ok
    except TimeoutError:
        return False


def attach() -> None:
    """Adds accept_async / acquire_async to the compiled PipeServer and Semaphore (called by
    sharedstate/__init__.py). SharedState, Queue and Mailslot define theirs in Python; Pipe's
    recv_async is in its C method table (bind_channels.cpp)."""
    setattr(_core.PipeServer, "accept_async", server_accept_async)
    setattr(_core.Semaphore, "acquire_async", semaphore_acquire_async)
