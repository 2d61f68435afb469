"""Array fields (issue 11 part 1): buffer writes in one copy, read-only numpy snapshots."""
from __future__ import annotations

import array
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import sharedstate as ss

N = 1000
LAYOUT = ss.Layout([("seq", "<u8"), ("data", "<i4", (N,)), ("flags", "?", (3,)), ("label", "S8"),
                    ("img", "u1", (4, 8, 3)), ("t", "<f8")])


def test_buffer_writes_of_every_kind(unique_name):
    with ss.SharedState.create(unique_name, LAYOUT) as st:
        a = np.arange(N, dtype="<i4")
        st.write(data=a)
        assert np.array_equal(st.read().data, a)
        st.write(data=(a * 2).tobytes())                       # bytes: the field's raw bytes
        assert np.array_equal(st.data, a * 2)
        st.write(data=bytearray((a * 3).tobytes()))
        assert np.array_equal(st.data, a * 3)
        st.write(data=memoryview((a * 4).tobytes()))           # memoryview of bytes
        assert np.array_equal(st.data, a * 4)
        st.write(data=memoryview(a * 5))                       # typed memoryview
        assert np.array_equal(st.data, a * 5)
        st.write(data=array.array("i", range(N, 2 * N)))       # array.array of the field's type
        assert np.array_equal(st.data, np.arange(N, 2 * N))
        st.write(data=list(range(7, 7 + N)))                   # a sequence still works
        assert np.array_equal(st.data, np.arange(7, 7 + N))
        st.write(data=tuple(range(N)))
        assert np.array_equal(st.data, np.arange(N))
        st.write(data=np.arange(2 * N, dtype="<i4")[::2])     # strided: gathered, one copy
        assert np.array_equal(st.data, np.arange(0, 2 * N, 2))
        st.write(data=np.arange(N, dtype="<i4").reshape(10, 100))  # any shape of the right size
        assert np.array_equal(st.data, np.arange(N))
        st.data = np.full(N, -1, "<i4")                        # attribute set takes buffers too
        assert (st.data == -1).all()
        st.write(flags=np.array([True, False, True]), img=np.ones((4, 8, 3), np.uint8), t=1.5, seq=3)
        s = st.read()
        assert s.flags.tolist() == [True, False, True] and s.img.sum() == 96 and s.t == 1.5 and s.seq == 3
        assert (s.data == -1).all()  # fields not named keep their value


def test_wrong_size_or_dtype_is_a_value_error_naming_the_field(unique_name):
    with ss.SharedState.create(unique_name, LAYOUT) as st:
        st.write(data=np.arange(N, dtype="<i4"))
        v = st.version
        with pytest.raises(ValueError, match=r"\.data.*float64|\.data.*'d'"):
            st.write(data=np.zeros(N // 2, np.float64))         # same byte size, wrong type
        with pytest.raises(ValueError, match=r"\.data.*'<?q'|\.data.*'l'"):
            st.write(data=np.zeros(N, np.int64))                # numpy's default int is not int32
        with pytest.raises(ValueError, match=r"\.data.*3996 bytes"):
            st.write(data=np.zeros(N - 1, np.int32))
        with pytest.raises(ValueError, match=r"\.data.*bytes"):
            st.write(data=b"\0" * (4 * N + 1))
        with pytest.raises(ValueError, match=r"\.data.*bytes"):
            st.data = bytearray(8)
        with pytest.raises(ValueError, match=r"\.data"):
            st.write(data=array.array("f", [0.0] * N))
        with pytest.raises(ValueError, match=r"\.data.*elements"):
            st.write(data=[1, 2, 3])
        with pytest.raises(ValueError, match=r"\.flags"):
            st.write(flags=np.zeros(3, np.int8))
        with pytest.raises(ValueError, match=r"\.data"):
            st.write(t=2.0, data=np.zeros(N, ">i4"))            # big-endian: nothing written
        assert st.version == v and st.t == 0.0
        assert np.array_equal(st.data, np.arange(N))


def test_snapshot_arrays_are_read_only_and_never_change(unique_name):
    with ss.SharedState.create(unique_name, LAYOUT) as st:
        st.write(data=np.full(N, 1, "<i4"))
        s1 = st.read()
        d1 = s1.data
        assert isinstance(d1, np.ndarray) and d1.dtype == np.dtype("<i4") and d1.shape == (N,)
        assert not d1.flags.writeable
        with pytest.raises(ValueError):
            d1[0] = 5
        with pytest.raises(ValueError):
            d1.flags.writeable = True                          # it owns a read-only buffer
        assert s1.img.shape == (4, 8, 3) and s1.img.dtype == np.uint8  # the layout's shape
        del s1
        for k in range(2, 6):                                  # later writes, and snapshot reuse
            st.write(data=np.full(N, k, "<i4"))
            s = st.read()
            assert (s.data == k).all()
        assert (d1 == 1).all()                                 # a copy, not a view of the segment
        held = [st.read() for _ in range(3)]                   # unchanged seq: the same snapshot
        st.write(data=np.full(N, 9, "<i4"))
        assert all((h.data == 5).all() for h in held) and (st.read().data == 9).all()


def test_field_attribute_of_an_array(unique_name):
    with ss.SharedState.create(unique_name, LAYOUT) as st:
        st.write(data=np.arange(N, dtype="<i4"))
        a = st.data
        assert isinstance(a, np.ndarray) and not a.flags.writeable and a.shape == (N,)
        st.write(data=np.zeros(N, "<i4"))
        assert a[5] == 5 and st.data[5] == 0
        assert st["data"][3] == 0 and st["img"].shape == (4, 8, 3)


def test_scalars_stay_scalars_and_s_fields_stay_bytes(unique_name):
    with ss.SharedState.create(unique_name, LAYOUT) as st:
        st.write(seq=7, t=2.5, label=b"abc")
        s = st.read()
        assert type(s.seq) is int and type(s.t) is float and s.label == b"abc" and type(s.label) is bytes
        assert st.label == b"abc"
    with ss.SharedState.create(unique_name + "c", ss.CONTROLLER) as c:  # no array fields
        assert all(type(v) in (int, bool) for v in c.read())


def test_opened_without_layout_gives_one_dimensional_arrays(unique_name):
    with ss.SharedState.create(unique_name, LAYOUT) as st:
        st.write(img=np.arange(96, dtype=np.uint8).reshape(4, 8, 3))
        with ss.SharedState.open(unique_name) as o:             # the header knows counts only
            assert o.read().img.shape == (96,) and o.img[95] == 95
        with ss.SharedState.open(unique_name, LAYOUT) as o:     # a layout given brings its shapes
            assert o.read().img.shape == (4, 8, 3) and o.img[3, 7, 2] == 95


def test_whole_payload_buffer_write_and_read_into(unique_name):
    with ss.SharedState.create(unique_name, LAYOUT) as st:
        rec = np.zeros(1, LAYOUT.dtype)
        rec["seq"] = 11
        rec["data"] = np.arange(N)
        rec["label"] = b"xy"
        st.write(rec)                                          # one buffer: the whole payload
        assert st.seq == 11 and np.array_equal(st.data, np.arange(N)) and st.label == b"xy"
        out = np.zeros(1, LAYOUT.dtype)
        assert st.read_into(out) == st.version
        assert out.tobytes() == rec.tobytes()
        with pytest.raises(ValueError, match="bytes given"):
            st.write(rec.tobytes()[:-1])


@pytest.mark.parametrize("nbytes", [64, 64 << 10, 8 << 20])
def test_big_payloads(unique_name, nbytes):
    layout = ss.Layout([("tag", "<u8"), ("data", "u1", (nbytes,))])
    with ss.SharedState.create(unique_name, layout) as st:
        for k in (1, 2, 255):
            st.write(tag=k, data=np.full(nbytes, k, np.uint8))
            s = st.read()
            assert s.tag == k and s.data.shape == (nbytes,) and s.data[0] == k and s.data[-1] == k
            assert (s.data == k).all()
        buf = np.zeros(1, layout.dtype)
        st.read_into(buf)
        assert (buf["data"] == 255).all() and buf["tag"][0] == 255
        st.write(np.zeros(1, layout.dtype))                    # whole payload from a buffer
        assert st.tag == 0 and not st.data.any()


def test_raw_segment_arrays(unique_name):
    from multiprocessing import shared_memory
    layout = ss.Layout([("a", "<f8", (16,))])
    shm = shared_memory.SharedMemory(create=True, size=layout.size)
    try:
        np.ndarray((16,), "<f8", buffer=shm.buf)[:] = np.arange(16)
        with ss.SharedState.attach_raw(shm.name, layout) as st:
            assert np.array_equal(st.read().a, np.arange(16)) and not st.a.flags.writeable
            st.write(a=np.ones(16))
            assert (st.a == 1).all()
    finally:
        shm.close()
        shm.unlink()


CHILD = textwrap.dedent("""
    import sys, numpy as np, sharedstate as ss
    st = ss.SharedState.open(sys.argv[1])
    n = st.layout.fields[1].count
    fills = [np.full(n, k, np.uint32) for k in range(1, 9)]
    print("ready", flush=True)
    for i in range(1, int(sys.argv[2]) + 1):
        st.write(tag=i, data=fills[i & 7])   # every element of write i is (i & 7) + 1
    print(i, flush=True)
""")


@pytest.mark.timeout(300)
def test_cross_process_snapshots_are_one_fill(unique_name):
    """A child writes large arrays, each write one constant fill, as fast as it can; every
    snapshot the parent takes is one fill (never a mix of two writes)."""
    count = (2 << 20) // 4                                     # 2 MiB of u32 per write
    layout = ss.Layout([("tag", "<u8"), ("data", "<u4", (count,))])
    writes = 400
    with ss.SharedState.create(unique_name, layout) as st:
        child = subprocess.Popen([sys.executable, "-c", CHILD, unique_name, str(writes)],
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "ready"
            seen = set()
            reads = 0
            while child.poll() is None or reads == 0:
                s = st.read()
                d = s.data
                first = int(d[0])
                assert (d == first).all(), f"torn snapshot: {np.unique(d)[:8]}"
                assert first == ((s.tag & 7) + 1 if s.tag else 0)  # tag and data: the same write
                seen.add(first)
                into = np.zeros(1, layout.dtype)
                st.read_into(into)
                assert (into["data"] == into["data"][0, 0]).all()
                reads += 1
                assert not d.flags.writeable and (d == first).all()   # still one fill, later
            assert child.wait(60) == 0
            assert len(seen) > 1 and reads > 10, (seen, reads)  # the writer really ran meanwhile
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
