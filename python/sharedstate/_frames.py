"""Frames: the latest frame from a writer (a C++ game, a camera, a simulator), zero-copy and
never torn, as a numpy array.

    fr = Frames.create("game", (1080, 1920, 4), np.uint8)  # the writer (C++ or Python)
    with fr.loan() as a:                                   # a free slot, writable, in place
        a[...] = render()                                  # published when the block ends
    fr.publish(img)                                        # or: one copy, then publish

    r = Frames.open("game")                                # shape and dtype from the header
    v = 0
    while True:
        v = r.wait(since=v, timeout=1.0)                   # TimeoutError if none came
        with r.latest() as a:                              # read-only, pinned: never changes
            use(a)
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core
from ._layout import FieldSpec, Layout, _dtype_format, _field_from_dtype

__all__ = ["Frames"]

_ShapeLike = Union[int, Sequence[int]]


def _element_of(name: str, shape: _ShapeLike, dtype: Any) -> Tuple[Tuple[int, ...], Layout, bool, np.dtype]:
    """(shape, element layout, scalar?, element dtype): a subarray dtype's dims join the shape."""
    shp = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
    dt = np.dtype(dtype)
    if dt.subdtype is not None:
        base, sub = dt.subdtype
        shp, dt = shp + tuple(sub), base
    if any(d <= 0 for d in shp):
        raise ValueError(f"frames {name!r}: every dimension must be >= 1, got {shp}")
    if dt.names is not None:
        return shp, Layout.from_dtype(dt), False, dt
    f = _field_from_dtype("value", dt, 0)
    return shp, Layout._make([f], dt.itemsize, dt.alignment), True, dt


def _dtype_of(fields: Sequence[Sequence[Any]], size: int, align: int, scalar: bool) -> Tuple[np.dtype, Tuple[int, ...]]:
    """The element dtype from the header's field table, and extra trailing dims (if any)."""
    if not scalar:
        return Layout._make(fields, size, align).dtype, ()
    f = FieldSpec(*fields[0])
    if f.kind in ("S", "V"):
        return np.dtype(f"{f.kind}{f.count}"), ()
    base = np.dtype("?" if f.kind == "b" else f"<{f.kind}{f.itemsize}")
    return base, ((f.count,) if f.count > 1 else ())


class Frames:
    """A ring of ``readers + 2`` frame slots in one named shared-memory segment: the writer
    fills a free slot in place and publishes it; readers pin the newest one and see it as a
    read-only numpy array that cannot change while they hold it.

    One writer at a time (the writer lock of SharedState: a writer killed mid-frame is taken
    over, and its unfinished frame is never published). Any number of readers, but at most
    ``readers`` frames held at once (by all processes together): one more is a ValueError,
    never a wait. A reader killed while holding a frame loses its pin as soon as someone needs
    it. ``version`` counts published frames; ``wait`` blocks like SharedState's.
    """

    __slots__ = ("_core", "_shape", "_dtype", "_count", "__weakref__")
    _core: Any
    _shape: Tuple[int, ...]
    _dtype: np.dtype
    _count: int

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, name: str, shape: _ShapeLike, dtype: Any, *, readers: int = 4, exist_ok: bool = False,
               persistent: bool = False) -> "Frames":
        """Create frames of ``shape`` and ``dtype`` (any numpy number or bool type, fixed bytes,
        or a structured dtype of those). ``readers``: how many frames may be held at once.
        FileExistsError if the name is in use (``exist_ok=True`` opens it; its shape and dtype
        must match: LayoutMismatchError). Removed when the last holder closes or dies unless
        ``persistent=True``."""
        if readers < 1:
            raise ValueError(f"frames {name!r}: readers must be >= 1, got {readers}")
        shp, el, scalar, _ = _element_of(name, shape, dtype)
        core = _core.FramesCore.create(name, list(shp), el._spec(), el.size, el.align, scalar, int(readers),
                                       bool(exist_ok), bool(persistent))
        return cls._attach(core)

    @classmethod
    def open(cls, name: str) -> "Frames":
        """Open existing frames; shape and dtype come from the header (FileNotFoundError if
        there are none; another kind of object is WrongKindError; a damaged header is
        CorruptSegmentError)."""
        return cls._attach(_core.FramesCore.open(name))

    @classmethod
    def _attach(cls, core: Any) -> "Frames":
        self = object.__new__(cls)
        self._core = core
        shape, fields, size, align, scalar = core.spec()
        dt, extra = _dtype_of(fields, size, align, scalar)
        self._shape = tuple(shape) + extra
        self._dtype = dt
        self._count = int(np.prod(self._shape, dtype=np.int64)) if self._shape else 1
        return self

    # ------------------------------------------------------------------ writing
    def loan(self, timeout: Optional[float] = 5.0) -> "_core.FrameLoan":
        """A free slot as a writable numpy array, filled in place and published when the block
        ends cleanly; dropped (never published) if the block raises::

            with fr.loan() as a:
                a[...] = frame

        Holds the writer lock from entering the block to its end (``timeout``: how long to
        wait for another live writer; TimeoutError). After the block the array is made
        read-only; slices taken from it inside the block are not: do not keep them (the slot
        is reused for later frames). The block is compiled code (``_core.FrameLoan``): its exit
        commits first, in as few steps as possible, because after a big fill every step is a
        cache and TLB miss; ``version`` is the published version once the block has ended."""
        return self._core.loan_block(self, timeout)

    def publish(self, frame: Any, timeout: Optional[float] = 5.0) -> int:
        """One copy of ``frame`` (any C-contiguous buffer of exactly one frame's bytes, e.g. a
        numpy array of the shape and dtype) into a free slot, then publish. The new version."""
        if isinstance(frame, np.ndarray) and not frame.flags.c_contiguous:
            frame = np.ascontiguousarray(frame)
        n = memoryview(frame).nbytes
        if n != self.nbytes:
            raise ValueError(f"publish to frames {self.name!r}: {n} bytes, a frame is {self.nbytes}")
        return int(self._core.publish(frame, timeout))

    # ------------------------------------------------------------------ reading
    def latest(self) -> "_Latest":
        """The newest published frame, pinned, as a read-only numpy array of the slot itself
        (zero-copy)::

            with fr.latest() as a:
                use(a)

        The writer never writes a pinned slot. The array is the pin: the block drops the
        library's references at its end, and the pin goes with the last reference to the
        array (or any view of it). So an array kept after the block is NOT invalidated and NOT
        a copy: it stays pinned, frozen on its frame, until you drop it (and counts against
        ``readers`` until then). Never reading another frame's bytes is guaranteed either
        way. Copy (``np.array(a)``) what you keep, and in a loop ``del a`` after the block (the
        name still holds the array until it is rebound). A kept array keeps the mapping, not
        the segment: close() works as usual. The context manager's ``version`` and
        ``commit_ns`` (``_core.monotonic_ns()`` of the writer's commit) describe the frame."""
        return _Latest(self)

    @property
    def version(self) -> int:
        """Frames published so far (0: none yet; latest() is then the zero-filled frame)."""
        return int(self._core.version)

    async def wait_async(self, since: Optional[int] = None, timeout: Optional[float] = None) -> int:
        """``await fr.wait_async(since=None, timeout=None)``: wait() for asyncio (sharedstate._aio)."""
        from ._aio import state_wait_async
        return await state_wait_async(self, since, timeout)

    def wait(self, since: Optional[int] = None, timeout: Optional[float] = None, *,
             spin: Optional[float] = None) -> int:
        """Block until ``version > since`` (default: the version now) and return the new
        version; spins briefly, then sleeps in the kernel. GIL released, Ctrl-C interrupts;
        TimeoutError after ``timeout`` seconds."""
        if since is None:
            since = self.version
        return int(self._core.wait(int(since), timeout, spin))

    # ------------------------------------------------------------------ facts and lifetime
    @property
    def name(self) -> str:
        return str(self._core.name)

    @property
    def shape(self) -> Tuple[int, ...]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def nbytes(self) -> int:
        """Bytes of one frame."""
        return self._count * self._dtype.itemsize

    @property
    def readers(self) -> int:
        return int(self._core.info()["readers"])

    @property
    def closed(self) -> bool:
        return bool(self._core.closed)

    def info(self) -> Dict[str, Any]:
        """A dict: shape, frame_bytes, readers, slots, version, pins_held, recoveries (dead
        writers taken over), reclaimed (dead readers' pins taken back), writer_pid, ..."""
        return dict(self._core.info())

    def close(self) -> None:
        """Stop holding the frames. The last holder of non-persistent frames removes them
        (frames still pinned by arrays keep the segment mapped until they are dropped)."""
        self._core.close()

    def unlink(self) -> None:
        """Remove the name now (holders keep their mapping). No error if already gone."""
        try:
            _core.FramesCore.unlink(self.name)
        except FileNotFoundError:
            pass

    def __enter__(self) -> "Frames":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return f"<Frames {self.name!r} closed>"
        return f"<Frames {self.name!r} {self._shape} {self._dtype} version={self.version}>"

    def _array(self, buf: Any) -> np.ndarray:
        # One constructor call over the slot (its base keeps buf, the loan or the pin, alive;
        # read-only when buf is): after a big frame has evicted the caches, every Python-level
        # step of the reader's path is a cache miss, so the path is kept short.
        return np.ndarray(self._shape, self._dtype, buf)


class _Latest:
    """The context manager of Frames.latest; ``version`` and ``commit_ns`` once entered (0 before)."""

    __slots__ = ("_fr", "_p", "_version", "_commit_ns")

    def __init__(self, fr: Frames) -> None:
        self._fr = fr
        self._p: Any = None
        self._version = 0
        self._commit_ns = 0

    def __enter__(self) -> np.ndarray:
        # Two steps between the wake and the array: version and commit_ns are read from the
        # pin when asked (or when the block ends), not on the way in.
        p = self._p = self._fr._core.latest()
        return self._fr._array(p)

    def __exit__(self, *exc: Any) -> None:
        # The pin lives in the array's base: it ends with the array's last reference.
        p, self._p = self._p, None
        if p is not None:
            self._version, self._commit_ns = int(p.version), int(p.commit_ns)

    @property
    def version(self) -> int:
        """The frame's version (0 before the block is entered)."""
        p = self._p
        return int(p.version) if p is not None else self._version

    @property
    def commit_ns(self) -> int:
        """``_core.monotonic_ns()`` of the writer's commit of this frame (0 before the block)."""
        p = self._p
        return int(p.commit_ns) if p is not None else self._commit_ns
