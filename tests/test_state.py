"""SharedState in one process: the API contract of DESIGN.md, errors, layouts, views."""
from __future__ import annotations

import ctypes
import os
import stat
import sys
import threading
import time

import numpy as np
import pytest

import sharedstate as ss
from conftest import LINUX


def test_create_write_read_fields(unique_name):
    with ss.SharedState.create(unique_name, ss.CONTROLLER) as st:
        assert st.version == 0
        assert tuple(st.read()) == (0, 0, False, False, False)
        st.write(x=200, y=300, is_running=True)
        snap = st.read()
        assert (snap.x, snap.y, snap.is_open, snap.is_running, snap.is_pressing) == (200, 300, False, True, False)
        assert snap == (200, 300, False, True, False)
        assert st.version == 1
        st.write(y=-7)  # fields not named keep their value
        assert tuple(st.read()) == (200, -7, False, True, False)
        st.x = 5
        assert st.x == 5 and st.y == -7 and st.is_running is True
        assert st.version == 3
        assert snap._asdict()["x"] == 200


def test_write_whole_payload_positionally(unique_name):
    with ss.SharedState.create(unique_name, ss.CONTROLLER) as st:
        st.write((1, 2, True, False, True))
        assert tuple(st.read()) == (1, 2, True, False, True)
        st.write(bytes([3, 0, 0, 0, 4, 0, 0, 0, 0, 1, 0, 0]))
        assert tuple(st.read()) == (3, 4, False, True, False)
        with pytest.raises(ValueError):
            st.write(b"short")
        with pytest.raises(ValueError):
            st.write((1, 2))
        with pytest.raises(TypeError):
            st.write((1, 2, True, False, True), x=1)


def test_bad_values_raise_and_write_nothing(unique_name):
    with ss.SharedState.create(unique_name, ss.CONTROLLER) as st:
        st.write(x=1, y=2)
        v = st.version
        with pytest.raises(TypeError, match="no field 'z'"):
            st.write(x=9, z=1)
        with pytest.raises(OverflowError, match="int32"):
            st.write(x=9, y=2**31)
        with pytest.raises(TypeError):
            st.x = "text"
        with pytest.raises(TypeError):
            st.x = 1.5
        with pytest.raises(AttributeError):
            del st.x
        with pytest.raises(AttributeError):
            st.not_a_field = 1
        assert st.version == v and tuple(st.read())[:2] == (1, 2)


def test_all_field_kinds_round_trip(unique_name):
    layout = ss.Layout([
        ("i1", "i1"), ("u1", "u1"), ("i2", "<i2"), ("u2", "<u2"), ("i8", "<i8"), ("u8", "<u8"),
        ("f4", "<f4"), ("f8", "<f8"), ("flag", "?"), ("label", "S8"), ("vec", "<f8", (3,)), ("raw", "V4"),
    ])
    with ss.SharedState.create(unique_name, layout) as st:
        st.write(i1=-128, u1=255, i2=-32768, u2=65535, i8=-2**63, u8=2**64 - 1, f4=1.5, f8=-2.25,
                 flag=True, label=b"abc", vec=(1.0, 2.0, 3.0), raw=b"\x01\x02\x03\x04")
        s = st.read()
        assert (s.i1, s.u1, s.i2, s.u2, s.i8, s.u8) == (-128, 255, -32768, 65535, -2**63, 2**64 - 1)
        assert (s.f4, s.f8, s.flag, s.label, s.raw) == (1.5, -2.25, True, b"abc", b"\x01\x02\x03\x04")
        assert s.vec.tolist() == [1.0, 2.0, 3.0] and s.vec.dtype == np.float64  # arrays: numpy
        st.label = "héllo"  # str is stored as UTF-8
        assert st.label == "héllo".encode()
        with pytest.raises(ValueError):
            st.label = b"123456789"
        with pytest.raises(OverflowError):
            st.u1 = 256
        with pytest.raises(OverflowError):
            st.u8 = -1
        with pytest.raises(ValueError):
            st.vec = (1.0, 2.0)
        arr = np.zeros(1, dtype=layout.dtype)
        st.read_into(arr)
        assert arr["u2"][0] == 65535 and arr["label"][0] == "héllo".encode()


def test_layouts_from_dtype_ctypes_and_pairs():
    dt = np.dtype([("x", "<i4"), ("y", "<i4"), ("is_open", "?"), ("is_running", "?"), ("is_pressing", "?")], align=True)
    assert dt.itemsize == 12
    assert ss.Layout.from_dtype(dt) == ss.CONTROLLER

    class Controller(ctypes.Structure):
        _fields_ = [("x", ctypes.c_int32), ("y", ctypes.c_int32), ("is_open", ctypes.c_bool),
                    ("is_running", ctypes.c_bool), ("is_pressing", ctypes.c_bool)]

    assert ctypes.sizeof(Controller) == 12
    assert ss.Layout.from_ctypes(Controller) == ss.CONTROLLER
    assert ss.CONTROLLER.size == 12 and ss.CONTROLLER.names == ("x", "y", "is_open", "is_running", "is_pressing")
    assert ss.CONTROLLER.dtype == dt
    with pytest.raises(ValueError, match="nested"):
        ss.Layout.from_dtype(np.dtype([("a", [("b", "i4")])]))
    with pytest.raises(ValueError, match="big-endian"):
        ss.Layout([("x", ">i4")])
    with pytest.raises(ValueError, match="structured"):
        ss.Layout.from_dtype(np.dtype("i4"))
    with pytest.raises(TypeError):
        ss.Layout.from_ctypes(int)
    with pytest.raises(ValueError, match="1..31"):
        ss.Layout([("x" * 40, "i4")])


def test_create_from_ctypes_and_open_reads_layout_from_header(unique_name):
    class Pose(ctypes.Structure):
        _fields_ = [("t", ctypes.c_double), ("xyz", ctypes.c_float * 3), ("id", ctypes.c_uint16)]

    with ss.SharedState.create(unique_name, Pose) as st:
        st.write(t=1.25, xyz=(1, 2, 3), id=7)
        with ss.SharedState.open(unique_name) as other:
            assert other.layout == ss.Layout.from_ctypes(Pose)
            snap = other.read()  # array fields are numpy arrays
            assert (snap.t, snap.xyz.tolist(), snap.id) == (1.25, [1.0, 2.0, 3.0], 7)
            assert other.layout.size == ctypes.sizeof(Pose)


def test_exists_and_not_found_errors(unique_name):
    with pytest.raises(FileNotFoundError, match=unique_name):
        ss.SharedState.open(unique_name)
    with ss.SharedState.create(unique_name, ss.CONTROLLER) as st:
        with pytest.raises(FileExistsError, match=unique_name):
            ss.SharedState.create(unique_name, ss.CONTROLLER)
        st.write(x=4)
        with ss.SharedState.create(unique_name, ss.CONTROLLER, exist_ok=True) as again:
            assert again.x == 4
        with pytest.raises(ss.LayoutMismatchError, match="payload is 12 bytes, expected 8"):
            ss.SharedState.open(unique_name, ss.Layout([("a", "<i4"), ("b", "<i4")]))
        with pytest.raises(ss.LayoutMismatchError, match="field 1 is 'y'"):
            ss.SharedState.open(unique_name, ss.Layout([("x", "<i4"), ("q", "<i4"), ("a", "?"), ("b", "?"), ("c", "?")]))
        with pytest.raises(ss.LayoutMismatchError):
            ss.SharedState.create(unique_name, ss.Layout([("x", "<i8")]), exist_ok=True)
        with ss.SharedState.open(unique_name, ss.CONTROLLER) as same:
            assert same.x == 4


@pytest.mark.parametrize("bad", ["", "a/b", "..", ".", "x" * 201, "nul\0byte", "back\\slash", "Local\\", "tab\tname"])
def test_bad_names_raise_value_error(bad):
    with pytest.raises(ValueError, match="name"):
        ss.SharedState.create(bad, ss.CONTROLLER)
    with pytest.raises(ValueError):
        ss.SharedState.open(bad)


def test_local_prefix_is_accepted(unique_name):
    with ss.SharedState.create("Local\\" + unique_name, ss.CONTROLLER) as st:
        st.write(x=1)
        with ss.SharedState.open("Local\\" + unique_name) as o:
            assert o.x == 1


def test_closed_object_raises_and_close_is_idempotent(unique_name):
    st = ss.SharedState.create(unique_name, ss.CONTROLLER)
    st.close()
    st.close()
    assert st.closed
    for op in (st.read, lambda: st.x, lambda: st.write(x=1), lambda: st.version, lambda: st.wait(timeout=0)):
        with pytest.raises(ValueError, match="closed"):
            op()
    assert "closed" in repr(st)


def test_view_is_zero_copy_and_outlives_close(unique_name):
    st = ss.SharedState.create(unique_name, ss.CONTROLLER)
    view = st.view()
    assert view.shape == (1,) and view.dtype == ss.CONTROLLER.dtype
    assert not view.flags.writeable
    st.write(x=42, is_pressing=True)
    assert view["x"][0] == 42 and bool(view["is_pressing"][0])
    w = st.view(writable=True)
    w["y"] = 9
    assert st.read().y == 9
    st.close()  # never raises because views exist (the stdlib's BufferError)
    assert view["x"][0] == 42  # still mapped: the view keeps the mapping alive
    del view, w


def test_read_into_buffers(unique_name):
    with ss.SharedState.create(unique_name, ss.CONTROLLER) as st:
        st.write(x=1, y=2, is_open=True)
        buf = bytearray(12)
        assert st.read_into(buf) == 1
        assert bytes(buf) == bytes([1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0])
        rec = np.zeros(1, ss.CONTROLLER.dtype)
        st.read_into(rec)
        assert rec["y"][0] == 2
        with pytest.raises(ValueError, match="12"):
            st.read_into(bytearray(4))
        with pytest.raises(TypeError):
            st.read_into(b"immutable bytes!")


def test_wait_timeout_and_wake_from_thread(unique_name):
    with ss.SharedState.create(unique_name, ss.CONTROLLER) as st:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match=unique_name):
            st.wait(timeout=0.05)
        assert time.monotonic() - t0 >= 0.04
        assert st.wait(since=st.version - 1 if st.version else 0, timeout=0) if st.version else True
        # A thread writes while the main thread waits: the GIL must be released.
        def writer():
            time.sleep(0.05)
            st.write(x=11)
        th = threading.Thread(target=writer)
        th.start()
        v = st.wait(since=0, timeout=5)
        th.join()
        assert v >= 1 and st.x == 11
        assert st.wait(since=0, timeout=0) == st.version  # already past: returns at once
        with pytest.raises(ValueError):
            st.wait(timeout=-1)


def test_lock_timeout_and_info(unique_name):
    with ss.SharedState.create(unique_name, ss.CONTROLLER) as st:
        assert st.lock_timeout == 5.0
        st.lock_timeout = 0.25
        assert st.lock_timeout == 0.25
        with pytest.raises(ValueError):
            st.lock_timeout = -1
        st.write(x=1)
        info = st.info()
        assert info["version"] == 1 and info["last_writer_pid"] == os.getpid()
        assert info["lock_owner_pid"] is None and info["creator_pid"] == os.getpid()
        assert info["segment_size"] == info["header_size"] + 2 * info["slot_stride"]


def test_item_access(unique_name):
    with ss.SharedState.create(unique_name, ss.CONTROLLER) as st:
        st["x"] = 3
        assert st["x"] == 3
        with pytest.raises(KeyError, match="no field"):
            st["nope"]


def test_field_named_like_a_method_stays_reachable(unique_name):
    with ss.SharedState.create(unique_name, ss.Layout([("read", "<i4"), ("version", "<i4")])) as st:
        st.write(read=1, version=2)
        assert st.read() == (1, 2)  # the method wins; the field is still there
        assert st["version"] == 2


@pytest.mark.skipif(not LINUX, reason="/dev/shm and modes are Linux facts")
def test_segment_is_0600_and_gone_after_last_close(unique_name):
    old = os.umask(0)
    try:
        st = ss.SharedState.create(unique_name, ss.CONTROLLER)
    finally:
        os.umask(old)
    path = f"/dev/shm/{unique_name}"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    other = ss.SharedState.open(unique_name)
    st.close()
    assert os.path.exists(path)  # other still holds it
    other.close()
    assert not os.path.exists(path)


@pytest.mark.skipif(not LINUX, reason="persistence is a Linux option")
def test_persistent_segment_survives_and_unlinks(unique_name):
    st = ss.SharedState.create(unique_name, ss.CONTROLLER, persistent=True)
    st.write(x=5)
    st.close()
    with ss.SharedState.open(unique_name) as again:
        assert again.x == 5 and again.info()["persistent"]
        again.unlink()
    assert not os.path.exists(f"/dev/shm/{unique_name}")
    again.unlink()  # already gone: no error


def test_raw_attach_multiprocessing_shared_memory(unique_name):
    from multiprocessing import shared_memory
    import struct

    shm = shared_memory.SharedMemory(name=unique_name, create=True, size=12)
    try:
        struct.pack_into("<ii???x", shm.buf, 0, 200, 300, False, True, False)
        st = ss.SharedState.attach_raw(shm.name, ss.CONTROLLER)
        assert st.read() == (200, 300, False, True, False)
        st.write(x=7)
        assert struct.unpack_from("<ii???x", shm.buf)[0] == 7
        with pytest.raises(ValueError, match="no version"):
            st.version
        with pytest.raises(ValueError):
            st.wait(timeout=0)
        st.close()  # raw segments are never unlinked by close
        assert struct.unpack_from("<i", shm.buf)[0] == 7
        if LINUX:  # Windows cannot tell a section's size, only its page-rounded view size
            with pytest.raises(ss.LayoutMismatchError, match="needs 24"):
                ss.SharedState.attach_raw(shm.name, ss.Layout([("a", "<f8", (3,))]))
        with pytest.raises(ss.LayoutMismatchError, match="needs 8192"):  # past the page everywhere
            ss.SharedState.attach_raw(shm.name, ss.Layout([("a", "u1", (8192,))]))
    finally:
        shm.close()
        shm.unlink()


def test_raw_attach_create_and_unlink(unique_name):
    st = ss.SharedState.attach_raw(unique_name, ss.CONTROLLER, create=True)
    st.write(y=3)
    if LINUX:  # a raw POSIX segment outlives its handles until unlinked
        st.close()
    again = ss.SharedState.attach_raw(unique_name, ss.CONTROLLER)
    assert again.y == 3
    again.unlink()
    again.close()
    st.close()  # Windows: the section goes with its last handle
    with pytest.raises(FileNotFoundError):
        ss.SharedState.attach_raw(unique_name, ss.CONTROLLER)


def test_many_fields_and_large_payload(unique_name):
    layout = ss.Layout([(f"f{i}", "<f8") for i in range(300)] + [("blob", "u1", (100_000,))])
    with ss.SharedState.create(unique_name, layout) as st:
        st.write(f299=2.5, blob=bytes(range(256)) * 390 + bytes(160))
        s = st.read()
        assert s.f299 == 2.5 and s.blob[:3].tolist() == [0, 1, 2] and len(s.blob) == 100_000
        with ss.SharedState.open(unique_name) as o:
            assert o.f299 == 2.5


def test_repr_and_snapshot_type(unique_name):
    with ss.SharedState.create(unique_name, ss.CONTROLLER) as st:
        r = repr(st)
        assert unique_name in r and "version=0" in r and "x:i4" in r
        assert type(st.read()) is ss.CONTROLLER.snapshot_type


def test_snapshots_held_by_the_caller_never_change(unique_name):
    # read() reuses a snapshot object only when nobody else holds it (see state_type.cpp)
    with ss.SharedState.create(unique_name, ss.CONTROLLER) as st:
        held = []
        for i in range(50):
            st.write(x=i, y=-i)
            held.append(st.read())
            snap = st.read()  # the same value again: the same object
            assert snap is held[-1]
        assert [(s.x, s.y) for s in held] == [(i, -i) for i in range(50)]
        assert len({id(s) for s in held}) == 50
        for i in range(100):  # a loop that drops each snapshot: values still right
            st.x = i
            assert st.read().x == i
        import gc
        gc.collect()  # the GC may untrack the spare snapshot; refilling it must still work
        st.write(x=1234, is_open=True)
        assert st.read() == (1234, -49, True, False, False)


def test_item_access_for_names_that_are_not_identifiers(unique_name):
    layout = ss.Layout.from_dtype(__import__("numpy").dtype([("my field", "<i4"), ("class", "<i4")]))
    with ss.SharedState.create(unique_name, layout) as st:
        st["my field"] = 3
        st.write(**{"class": 4})
        assert st["my field"] == 3 and st["class"] == 4
        assert tuple(st.read()) == (3, 4)
