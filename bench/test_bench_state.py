"""Single-process costs of SharedState beside the stdlib ways of reading the same 12 bytes.

    pytest bench/ --benchmark-only                       # all
    pytest bench/test_bench_state.py --benchmark-only -k read

Compare within one run (`--benchmark-group-by=group`); absolute figures drift with the machine.
The cross-process figures (round trips, throughput, torn reads) are in bench/compare.py.
"""
import ctypes
import struct
from multiprocessing import shared_memory

import numpy as np
import pytest

ss = pytest.importorskip("sharedstate")

CTRL = struct.Struct("<ii???x")


class Controller(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int32), ("y", ctypes.c_int32), ("is_open", ctypes.c_bool),
                ("is_running", ctypes.c_bool), ("is_pressing", ctypes.c_bool)]


@pytest.fixture
def st(bench_name):
    s = ss.SharedState.create(bench_name, ss.CONTROLLER)
    s.write(x=200, y=300, is_running=True)
    yield s
    s.close()


@pytest.fixture
def shm():
    m = shared_memory.SharedMemory(create=True, size=64)
    yield m
    try:
        m.close()
    except BufferError:  # a ctypes/numpy view still exported: the mapping goes with it
        pass
    m.unlink()


# ------------------------------------------------------------------ snapshot read
@pytest.mark.benchmark(group="read whole struct")
def test_ss_read(benchmark, st):
    snap = benchmark(st.read)
    assert (snap.x, snap.y, snap.is_running) == (200, 300, True)


@pytest.mark.benchmark(group="read whole struct")
def test_struct_unpack_from_torn(benchmark, shm):
    CTRL.pack_into(shm.buf, 0, 200, 300, False, True, False)
    assert benchmark(CTRL.unpack_from, shm.buf)[:2] == (200, 300)


@pytest.mark.benchmark(group="read whole struct")
def test_ss_read_into(benchmark, st):
    out = np.zeros(1, ss.CONTROLLER.dtype)
    benchmark(st.read_into, out)
    assert out["x"][0] == 200


# ------------------------------------------------------------------ one field
@pytest.mark.benchmark(group="field read")
def test_ss_field_read(benchmark, st):
    assert benchmark(lambda: st.x) == 200  # the lambda costs the same in every case of the group


@pytest.mark.benchmark(group="field read")
def test_ctypes_field_read_torn(benchmark, shm):
    c = Controller.from_buffer(shm.buf)
    c.x = 200
    assert benchmark(lambda: c.x) == 200
    del c


@pytest.mark.benchmark(group="field read")
def test_ss_view_field_unsynchronized(benchmark, st):
    v = st.view()
    assert benchmark(lambda: v["x"][0]) == 200


@pytest.mark.benchmark(group="field read")
def test_ss_version(benchmark, st):
    assert benchmark(lambda: st.version) >= 1


# ------------------------------------------------------------------ writes
@pytest.mark.benchmark(group="write")
def test_ss_field_write(benchmark, st):
    def f():
        st.x = 5
    benchmark(f)
    assert st.x == 5


@pytest.mark.benchmark(group="write")
def test_ss_write_two_fields(benchmark, st):
    benchmark(st.write, x=1, y=2)
    assert st.read()[:2] == (1, 2)


@pytest.mark.benchmark(group="write")
def test_struct_pack_into_torn(benchmark, shm):
    benchmark(CTRL.pack_into, shm.buf, 0, 1, 2, True, False, True)
    assert CTRL.unpack_from(shm.buf)[:2] == (1, 2)


@pytest.mark.benchmark(group="write")
def test_ctypes_field_write_torn(benchmark, shm):
    c = Controller.from_buffer(shm.buf)

    def f():
        c.x = 5
    benchmark(f)
    assert c.x == 5
    del c
