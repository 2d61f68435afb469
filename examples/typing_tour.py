"""Every public class of sharedstate, written as a type-checked program would use it.

    python examples/typing_tour.py           # runs it
    mypy --strict examples/typing_tour.py    # tests/test_typing.py checks it stays clean
"""
from __future__ import annotations

import ctypes
import sys
import uuid

import numpy as np

import sharedstate as ss


class Pose(ctypes.Structure):
    _fields_ = [("x", ctypes.c_float), ("y", ctypes.c_float), ("frame", ctypes.c_uint32)]


def layouts() -> list[ss.Layout]:
    by_list = ss.Layout([("x", "<i4"), ("y", "<i4"), ("is_open", "?")])
    by_dtype = ss.Layout.from_dtype(np.dtype([("speed", "<f8"), ("gear", "<i2")], align=True))
    by_ctypes = ss.Layout.from_ctypes(Pose)
    opaque = ss.Layout.opaque(32)
    first: ss.FieldSpec = by_list.fields[0]
    assert (first.name, first.kind, first.nbytes) == ("x", "i", 4)
    assert ss.CONTROLLER.size == 12 and ss.CONTROLLER.names[0] == "x"
    return [by_list, by_dtype, by_ctypes, opaque]


def state(name: str) -> int:
    with ss.SharedState.create(name, ss.CONTROLLER) as st:
        st.write(x=200, y=300, is_running=True)
        snap = st.read()
        x: int = snap.x
        st.x = x + 1
        buf = bytearray(st.layout.size)
        version: int = st.read_into(buf)
        st["y"] = 5
        info = st.info()
        assert info["version"] == version + 1
        view: np.ndarray = st.view()
        assert int(view["x"][0]) == 201
        try:
            st.wait(since=st.version, timeout=0.01)
        except TimeoutError:
            pass
        with ss.SharedState.open(name) as other:
            assert other.read() == st.read() and other.layout == ss.CONTROLLER
        try:
            ss.SharedState.open(name, ss.Layout([("z", "<f8")]))
        except ss.LayoutMismatchError as e:
            assert name in str(e)
        return st.version


def errors() -> tuple[type[Exception], ...]:
    return (ss.LayoutMismatchError, ss.CorruptSegmentError, ss.WrongKindError)


def main() -> int:
    name = f"sst-typing-tour-{uuid.uuid4().hex[:8]}"
    print(len(layouts()), "layouts;", "state version", state(name), ";", len(errors()), "error classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
