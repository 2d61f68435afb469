"""SharedState: a named seqlock segment, read and written torn-free from any process."""
from __future__ import annotations

import sys
from typing import Any, Dict, Optional

import numpy as np

from . import _core
from ._layout import Layout

__all__ = ["SharedState"]


class SharedState(_core.StateCore):
    """A named shared-memory struct. Readers never block and never see a torn value.

    Create it in one process and open it in others (from Python or C++)::

        st = SharedState.create("ControllerMemory", CONTROLLER)
        st.write(x=200, y=300, is_running=True)   # one atomic update
        st.read()                                 # Snapshot(x=200, y=300, ...)
        st.x                                      # one field, atomically
        st.wait(since=v, timeout=0.5)             # blocks until a newer version

    The compiled base class does the hot calls (``read``, ``read_into``, ``write``,
    ``version`` and the per-field attributes); this class adds construction, views,
    context management and repr.
    """

    __slots__ = ("_layout", "_name")
    _subclasses: Dict[Layout, type] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def _for_layout(cls, layout: Layout) -> type:
        """A subclass with one attribute descriptor per field (cached per layout)."""
        key = (cls, layout)
        sub: Optional[type] = SharedState._subclasses.get(key)  # type: ignore[call-overload]
        if sub is None:
            attrs: Dict[str, Any] = {"__slots__": ()}
            for i, f in enumerate(layout.fields):
                if f.name.isidentifier() and not hasattr(cls, f.name):
                    attrs[f.name] = _core.Field(i, f.name)
            sub = type(cls.__name__, (cls,), attrs)
            sub.__module__ = cls.__module__
            sub.__qualname__ = cls.__qualname__
            SharedState._subclasses[key] = sub  # type: ignore[index]
        return sub

    def _adopt(self, name: str, layout: Optional[Layout] = None) -> "SharedState":
        if layout is None:
            fields, size, align = _core._state_layout(self)
            layout = Layout._make(fields, size, align)
        self._layout = layout
        self._name = name
        _core._state_set_snapshot_type(self, layout.snapshot_type)
        _core._state_set_arrays(self, layout._array_types())
        self.__class__ = type(self)._for_layout(layout)
        return self

    @classmethod
    def create(cls, name: str, layout: Any, *, exist_ok: bool = False, persistent: bool = False) -> "SharedState":
        """Create the segment ``name`` with ``layout`` (a Layout, numpy dtype or ctypes Structure).

        FileExistsError if it exists and is in use (``exist_ok=True`` opens it instead; its
        layout must then match). A segment goes away when its last holder closes or dies,
        unless ``persistent=True``.
        """
        layout = Layout.coerce(layout)
        self = cls.__new__(cls)
        _core._state_create(self, name, layout._spec(), layout.size, layout.align, exist_ok, persistent)
        # exist_ok: an existing segment's layout was checked equal to this one (shapes come
        # from here; the header knows element counts only).
        return self._adopt(name, layout)

    @classmethod
    def _create_mirror(cls, name: str, layout: Any, source_key: str) -> "SharedState":
        """The bridge's local mirror of ``source_key`` (created, or reused if it already mirrors
        that key with this layout). The key and the source's liveness live in the segment's
        header (FORMAT.md, "Mirrors"), so every process that opens it sees ``info()["source"]``."""
        layout = Layout.coerce(layout)
        self = cls.__new__(cls)
        try:
            _core._state_create(self, name, layout._spec(), layout.size, layout.align, False, False, source_key)
            return self._adopt(name, layout)
        except FileExistsError:
            pass
        other = cls.open(name, layout)  # LayoutMismatchError if the existing one differs
        src = other.info().get("source")
        if not src or src["key"] != source_key:
            other.close()
            raise FileExistsError(f"SharedState {name!r} exists and is not a mirror of {source_key!r}")
        return other

    def _set_source_alive(self, alive: bool) -> None:
        """The bridge records its source's liveness (a mirror only); waiters wake to see it."""
        _core._state_set_source_alive(self, alive)

    @classmethod
    def open(cls, name: str, layout: Any = None) -> "SharedState":
        """Open an existing segment; its layout is read from the header.

        A ``layout`` given here must equal the segment's (else LayoutMismatchError).
        """
        want = None if layout is None else Layout.coerce(layout)
        self = cls.__new__(cls)
        if want is None:
            _core._state_open(self, name, None, 0, 0)
        else:
            _core._state_open(self, name, want._spec(), want.size, want.align)
        return self._adopt(name, want)  # equal to the header's (checked), with its array shapes

    @classmethod
    def attach_raw(cls, name: str, layout: Any, *, create: bool = False) -> "SharedState":
        """Map a legacy segment with no header (payload at offset 0), e.g. one made by an
        unmodified C++ program with CreateFileMapping, or by multiprocessing.shared_memory.

        No seqlock is possible there: ``read()`` re-reads until two copies agree, which makes
        torn values rarer but NOT impossible, and there is no ``version``/``wait``. Raw
        segments are never removed by close(); ``unlink()`` removes one when asked.
        """
        layout = Layout.coerce(layout)
        self = cls.__new__(cls)
        _core._state_attach_raw(self, name, layout._spec(), layout.size, layout.align, create)
        return self._adopt(name, layout)

    # ------------------------------------------------------------------ facts
    @property
    def name(self) -> str:
        return self._name

    @property
    def layout(self) -> Layout:
        return self._layout

    @property
    def closed(self) -> bool:
        return _core._state_closed(self)

    @property
    def lock_timeout(self) -> float:
        """Seconds a write waits for another process's write lock (default 5)."""
        return _core._state_lock_timeout(self)

    @lock_timeout.setter
    def lock_timeout(self, seconds: float) -> None:
        _core._state_set_lock_timeout(self, seconds)

    def info(self) -> Dict[str, Any]:
        """Header facts: version, sizes, creator, current and last writer pids, recoveries; for a
        bridge's mirror also ``source``: {"key", "alive", "changes"} (the version moves when
        ``alive`` changes, so a ``wait()`` sees it)."""
        return _core._state_info(self)

    # ------------------------------------------------------------------ access
    def view(self, writable: bool = False) -> np.ndarray:
        """A zero-copy numpy view (shape (1,)) of the live payload. UNSYNCHRONIZED: it may
        show a write in progress; use read()/read_into() for consistent values. Writes
        through a writable view bypass the seqlock and the version. The view keeps the
        mapping alive after close()."""
        buf = memoryview(_core._state_buffer(self, writable))  # holds the mapping alive
        arr: np.ndarray = np.frombuffer(buf, dtype=self._layout.dtype, count=1)
        if writable:
            arr.flags.writeable = True
        return arr

    def __getitem__(self, field: str) -> Any:
        """One field by name, from a consistent snapshot (any field name, even one that is not
        a Python identifier)."""
        names = self._layout.names
        return self.read()[names.index(field)] if field in names else self._missing(field)

    def __setitem__(self, field: str, value: Any) -> None:
        if field not in self._layout.names:
            self._missing(field)
        self.write(**{field: value})

    def _missing(self, field: str) -> Any:
        raise KeyError(f"SharedState {self._name!r} has no field {field!r}; fields: {', '.join(self._layout.names)}")

    # ------------------------------------------------------------------ lifetime
    async def wait_async(self, since: Optional[int] = None, timeout: Optional[float] = None) -> int:
        """``await st.wait_async(since=None, timeout=None)``: wait() for asyncio (sharedstate._aio)."""
        from ._aio import state_wait_async
        return await state_wait_async(self, since, timeout)

    def close(self) -> None:
        """Stop holding the segment (never raises because views exist; they stay valid).
        The last holder of a non-persistent segment removes it."""
        _core._state_close(self)

    def unlink(self) -> None:
        """Remove the name now (processes that have it open keep their mapping).
        No error if it is already gone."""
        try:
            _core.state_unlink(self._name)
        except FileNotFoundError:
            pass

    def __enter__(self) -> "SharedState":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return f"<SharedState {self._name!r} closed>"
        try:
            v = "raw" if _core._state_info(self)["raw"] else f"version={self.version}"
        except Exception:  # pragma: no cover - repr must never raise
            v = "?"
        return f"<SharedState {self._name!r} {self._layout!r} {v}>"
