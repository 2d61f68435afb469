"""Layouts: the field table of a payload, from the types Python users already have."""
from __future__ import annotations

import collections
import ctypes
import keyword
from typing import Any, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["Layout", "FieldSpec", "CONTROLLER"]

_KINDS = {"i", "u", "f", "b", "S", "V"}


class FieldSpec(NamedTuple):
    """One field: name, kind ('i' 'u' 'f' 'b' 'S' 'V'), itemsize, offset, count."""

    name: str
    kind: str
    itemsize: int
    offset: int
    count: int  # type: ignore[assignment]  # the field shadows tuple.count, by design

    @property
    def nbytes(self) -> int:
        return self.itemsize * self.count


def _field_from_dtype(name: str, dt: np.dtype, offset: int) -> FieldSpec:
    count = 1
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        count = int(np.prod(shape))
        dt = base
    if dt.names is not None:
        raise ValueError(f"field {name!r}: nested structures are not supported; flatten them")
    if dt.byteorder == ">":
        raise ValueError(f"field {name!r}: big-endian types are not supported")
    kind = dt.kind
    if kind == "S":
        return FieldSpec(name, "S", 1, offset, dt.itemsize * count)
    if kind == "V":
        return FieldSpec(name, "V", 1, offset, dt.itemsize * count)
    if kind not in ("i", "u", "f", "b"):
        raise ValueError(f"field {name!r}: numpy kind {kind!r} ({dt}) is not supported")
    return FieldSpec(name, kind, dt.itemsize, offset, count)


def _dtype_format(f: FieldSpec) -> Any:
    if f.kind in ("S", "V"):
        return f"{f.kind}{f.count}"
    base = "?" if f.kind == "b" else f"<{f.kind}{f.itemsize}"
    return base if f.count == 1 else (base, (f.count,))


class Layout:
    """The payload of a SharedState: named, typed fields at fixed offsets.

    ``Layout([("x", "i4"), ("y", "i4"), ("is_open", "?")])`` lays fields out like a C
    struct (numpy's ``align=True``); ``Layout.from_dtype`` and ``Layout.from_ctypes`` take
    what numpy and ctypes already describe, padding included.
    """

    __slots__ = ("fields", "size", "align", "_dtype", "_snapshot")
    fields: Tuple[FieldSpec, ...]
    size: int
    align: int
    _dtype: Optional[np.dtype]
    _snapshot: Optional[type]

    def __init__(self, fields: Iterable[Tuple[Any, ...]], *, align: bool = True) -> None:
        dt = np.dtype(list(fields), align=align)
        other = Layout.from_dtype(dt)
        self.fields, self.size, self.align = other.fields, other.size, other.align
        self._dtype = dt
        self._snapshot = None

    @classmethod
    def _make(cls, fields: Sequence[Sequence[Any]], size: int, align: int) -> "Layout":
        self = object.__new__(cls)
        self.fields = tuple(FieldSpec(*f) for f in fields)
        self.size = int(size)
        self.align = int(align)
        self._dtype = None
        self._snapshot = None
        self._check()
        return self

    @classmethod
    def from_dtype(cls, dtype: Any) -> "Layout":
        """A layout from a structured numpy dtype (``align=True`` gives C's padding)."""
        dt = np.dtype(dtype)
        if dt.names is None:
            raise ValueError(f"{dt} is not a structured dtype (it has no named fields)")
        fields = [_field_from_dtype(n, dt.fields[n][0], dt.fields[n][1]) for n in dt.names]
        self = cls._make(fields, dt.itemsize, dt.alignment)
        self._dtype = dt
        return self

    @classmethod
    def from_ctypes(cls, struct: type) -> "Layout":
        """A layout from a ``ctypes.Structure`` subclass (its offsets and padding)."""
        if not (isinstance(struct, type) and issubclass(struct, ctypes.Structure)):
            raise TypeError(f"{struct!r} is not a ctypes.Structure subclass")
        return cls.from_dtype(np.dtype(struct))

    @classmethod
    def opaque(cls, size: int) -> "Layout":
        """``size`` bytes without field names: one field ``data``."""
        return cls._make([FieldSpec("data", "V", 1, 0, int(size))], size, 8)

    @classmethod
    def coerce(cls, obj: Union["Layout", Any]) -> "Layout":
        if isinstance(obj, Layout):
            return obj
        if isinstance(obj, type) and issubclass(obj, ctypes.Structure):
            return cls.from_ctypes(obj)
        if isinstance(obj, (list, tuple)):
            return cls(obj)
        return cls.from_dtype(obj)

    def _check(self) -> None:
        if self.size <= 0:
            raise ValueError("a layout needs at least one byte")
        for f in self.fields:
            if f.kind not in _KINDS:
                raise ValueError(f"field {f.name!r}: unknown kind {f.kind!r}")
            if not f.name or len(f.name.encode()) > 31:
                raise ValueError(f"field name {f.name!r} must be 1..31 bytes (UTF-8)")
            if f.offset + f.nbytes > self.size:
                raise ValueError(f"field {f.name!r} ends past the payload ({self.size} bytes)")

    # ------------------------------------------------------------------ derived
    @property
    def names(self) -> Tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def dtype(self) -> np.dtype:
        """The numpy dtype of the payload (for views and ``read_into``)."""
        if self._dtype is None:
            self._dtype = np.dtype({
                "names": list(self.names),
                "formats": [_dtype_format(f) for f in self.fields],
                "offsets": [f.offset for f in self.fields],
                "itemsize": self.size,
            })
        return self._dtype

    @property
    def snapshot_type(self) -> type:
        """The named tuple that ``read()`` returns for this layout."""
        if self._snapshot is None:
            names = self.names
            ok = all(n.isidentifier() and not keyword.iskeyword(n) and not n.startswith("_") for n in names)
            snap: type = collections.namedtuple("Snapshot", names, rename=not ok)  # type: ignore[misc, arg-type]
            self._snapshot = snap
        return self._snapshot

    def _array_types(self) -> Optional[Tuple[Any, Tuple[Optional[Tuple[np.dtype, Tuple[int, ...]]], ...]]]:
        """For the compiled reader: (numpy.ndarray, per field (dtype, shape) or None), or None
        if no field is an array. An array field reads as a read-only numpy array of its
        dtype's element type and shape (the shape this layout's dtype gives it; a layout read
        from a segment header knows only the element count: a 1-d array)."""
        dt = self.dtype
        infos: List[Optional[Tuple[np.dtype, Tuple[int, ...]]]] = []
        for f in self.fields:
            if f.count <= 1 or f.kind in ("S", "V"):
                infos.append(None)
                continue
            fields = dt.fields
            sub = fields[f.name][0] if fields is not None and f.name in fields else None
            if sub is not None and sub.subdtype is not None:
                base, shape = sub.subdtype
            else:
                base, shape = np.dtype(_dtype_format(f)[0]), (f.count,)
            shape = tuple(int(x) for x in shape)
            if base.itemsize != f.itemsize or int(np.prod(shape)) != f.count:  # pragma: no cover - defensive
                base, shape = np.dtype(_dtype_format(f)[0]), (f.count,)
            infos.append((base, shape))
        if all(i is None for i in infos):
            return None
        return (np.ndarray, tuple(infos))

    def _spec(self) -> List[Tuple[Any, ...]]:
        return [tuple(f) for f in self.fields]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Layout):
            return NotImplemented
        return bool(self.size == other.size and self.fields == other.fields)

    def __hash__(self) -> int:
        return hash((self.size, self.fields))

    def __len__(self) -> int:
        return len(self.fields)

    def __repr__(self) -> str:
        def one(f: FieldSpec) -> str:
            t = "bool" if f.kind == "b" else (f"{f.kind}{f.count}" if f.kind in "SV" else f"{f.kind}{f.itemsize}")
            if f.count > 1 and f.kind not in "SV":
                t += f"[{f.count}]"
            return f"{f.name}:{t}@{f.offset}"
        return f"Layout({', '.join(one(f) for f in self.fields)}; size={self.size})"


#: The controller struct of the C++ side: int32 x, y; bool is_open, is_running, is_pressing (12 bytes).
CONTROLLER = Layout([("x", "<i4"), ("y", "<i4"), ("is_open", "?"), ("is_running", "?"), ("is_pressing", "?")])
