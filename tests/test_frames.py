"""Frames: the latest frame, zero-copy and never torn, across real processes; killed and
stopped readers, a writer killed mid-loan, the readers+1 error, threads sharing a handle,
and corrupt segments opened in child processes."""
from __future__ import annotations

import json
import os
import queue
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import _procctl
import sharedstate as ss
from conftest import LINUX, WINDOWS

HERE = Path(__file__).resolve().parent
CHILD = str(HERE / "frames_child.py")
POSIX_SIGNALS = pytest.mark.skipif(WINDOWS, reason="SIGINT delivery to a child's wait: POSIX only")


class Child:
    """A child process whose stdout lines arrive through a thread (portable, no select on pipes)."""

    def __init__(self, *args: str) -> None:
        self.p = subprocess.Popen([sys.executable, CHILD, *map(str, args)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.p.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix: str, timeout: float = 60.0) -> str:  # a child's start-up under Wine, loaded
        end = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None or time.monotonic() > end:
                self.p.kill()
                raise AssertionError(f"child never said {prefix!r}: {self.p.stderr.read()}")
            if line.startswith(prefix):
                return line

    def finish(self, timeout: float = 30.0) -> int:
        try:
            self.p.stdin.close()
        except OSError:
            pass
        return self.p.wait(timeout=timeout)


# ------------------------------------------------------------------------- in one process
def test_create_open_shape_dtype_from_header(unique_name):
    with ss.Frames.create(unique_name, (4, 6, 4), np.uint8, readers=3) as fr:
        assert fr.shape == (4, 6, 4) and fr.dtype == np.uint8 and fr.nbytes == 96
        assert fr.version == 0 and fr.readers == 3
        with fr.latest() as a:  # version 0: the zero-filled frame
            assert a.shape == (4, 6, 4) and not a.any() and not a.flags.writeable
        with ss.Frames.open(unique_name) as r:
            assert r.shape == fr.shape and r.dtype == fr.dtype
            with fr.loan() as a:
                assert a.flags.writeable
                a[...] = 7
            assert r.version == 1
            cm = r.latest()
            with cm as b:
                assert (b == 7).all() and cm.version == 1 and cm.commit_ns > 0
            assert ss._core.monotonic_ns() >= cm.commit_ns
            assert not a.flags.writeable  # the loaned array after publishing


def test_structured_and_subarray_dtypes(unique_name):
    px = np.dtype([("r", "u1"), ("g", "u1"), ("b", "u1"), ("t", "<f4")], align=True)
    with ss.Frames.create(unique_name, (3, 5), px) as fr:
        rec = np.zeros((3, 5), px)
        rec["t"] = 1.5
        rec["g"] = 9
        fr.publish(rec)
        with ss.Frames.open(unique_name) as r:
            assert r.dtype == px and r.shape == (3, 5)
            with r.latest() as a:
                assert (a["t"] == 1.5).all() and (a["g"] == 9).all()
    with ss.Frames.create(unique_name + "-s", 10, "(3,)<f8") as fr:  # subarray dims join the shape
        assert fr.shape == (10, 3) and fr.dtype == np.float64


def test_publish_copies_and_checks_size(unique_name):
    with ss.Frames.create(unique_name, (8, 8), np.float32) as fr:
        img = np.arange(64, dtype=np.float32).reshape(8, 8)
        assert fr.publish(img) == 1
        assert fr.publish(img.T) == 2  # not contiguous: copied first
        with fr.latest() as a:
            assert np.array_equal(a, img.T)
        fr.publish(bytes(256))
        with pytest.raises(ValueError, match="bytes"):
            fr.publish(np.zeros(3, np.float32))


def test_loan_dropped_on_exception(unique_name):
    with ss.Frames.create(unique_name, 16, np.uint8) as fr:
        fr.publish(np.full(16, 1, np.uint8))
        with pytest.raises(RuntimeError):
            with fr.loan() as a:
                a[...] = 99
                raise RuntimeError("render failed")
        assert fr.version == 1
        with fr.latest() as a:
            assert (a == 1).all()
        assert fr.info()["writer_pid"] is None  # the lock was released


def test_loan_block_is_entered_once_and_locks_only_inside(unique_name):
    with ss.Frames.create(unique_name, 16, np.uint8) as fr:
        cm = fr.loan(timeout=0)
        assert fr.info()["writer_pid"] is None  # the lock is taken by entering the block
        assert cm.version is None
        with cm as a:
            assert fr.info()["writer_pid"] == os.getpid()
            a[...] = 5
            inner = a[2:4]
        assert cm.version == 1 == fr.version
        assert not a.flags.writeable
        with pytest.raises(ValueError):
            a[0] = 1
        with pytest.raises(ValueError, match="entered once"):
            with cm:
                pass
        with pytest.raises(ValueError, match="committed or cancelled"):
            cm.commit()
        assert fr.info()["writer_pid"] is None
        del inner


def test_loan_entered_and_dropped_without_exit_releases_the_lock(unique_name):
    import gc
    with ss.Frames.create(unique_name, 16, np.uint8) as fr:
        cm = fr.loan()
        a = cm.__enter__()
        a[...] = 3
        assert fr.info()["writer_pid"] == os.getpid()
        del cm, a  # neither committed nor cancelled: dropped, never published
        gc.collect()
        assert fr.info()["writer_pid"] is None and fr.version == 0
        with fr.loan(timeout=0) as b:
            b[...] = 4
        with fr.latest() as c:
            assert (c == 4).all()


def test_errors_kinds_and_lifetime(unique_name):
    with pytest.raises(FileNotFoundError):
        ss.Frames.open(unique_name)
    with pytest.raises(ValueError):
        ss.Frames.create(unique_name, (0, 4), np.uint8)
    with pytest.raises(ValueError):
        ss.Frames.create(unique_name, 4, np.uint8, readers=0)
    with pytest.raises(ValueError):
        ss.Frames.create(unique_name, 4, object)
    fr = ss.Frames.create(unique_name, (2, 2), np.uint16)
    with pytest.raises(FileExistsError):
        ss.Frames.create(unique_name, (2, 2), np.uint16)
    same = ss.Frames.create(unique_name, (2, 2), np.uint16, exist_ok=True)
    with pytest.raises(ss.LayoutMismatchError):
        ss.Frames.create(unique_name, (2, 3), np.uint16, exist_ok=True)
    with pytest.raises(ss.WrongKindError):
        ss.SharedState.open(unique_name)
    with pytest.raises(ss.WrongKindError):
        ss.Queue.open(unique_name)
    with ss.SharedState.create(unique_name + "-st", ss.CONTROLLER):
        with pytest.raises(ss.WrongKindError):
            ss.Frames.open(unique_name + "-st")
    same.close()
    fr.close()
    assert fr.closed and "closed" in repr(fr)
    with pytest.raises(ValueError, match="closed"):
        fr.latest().__enter__()
    with pytest.raises(ValueError, match="closed"):
        fr.version
    with pytest.raises(FileNotFoundError):  # the last holder removed it
        ss.Frames.open(unique_name)


def test_kept_view_stays_pinned_and_never_changes(unique_name):
    with ss.Frames.create(unique_name, 1024, np.uint32, readers=2) as fr:
        fr.publish(np.full(1024, 5, np.uint32))
        with fr.latest() as kept:
            pass
        assert fr.info()["pins_held"] == 1  # the array is the pin: it outlives the block
        for i in range(50):
            fr.publish(np.full(1024, 100 + i, np.uint32))
        assert (kept == 5).all()  # frozen on its frame, never another frame's bytes
        sliced = kept[10:20]
        del kept
        assert fr.info()["pins_held"] == 1  # a view of it still holds it
        del sliced
        assert fr.info()["pins_held"] == 0
        with fr.latest() as a:
            assert (a == 149).all()
        del a


@pytest.mark.skipif(WINDOWS, reason="a Windows section lives while any view of it is mapped: the kept array keeps it")
def test_kept_view_keeps_the_mapping_not_the_segment(unique_name):
    fr = ss.Frames.create(unique_name, 256, np.uint8)
    fr.publish(np.full(256, 9, np.uint8))
    with fr.latest() as kept:
        pass
    fr.close()  # the last holder: the name goes, though an array still pins a frame
    with pytest.raises(FileNotFoundError):
        ss.Frames.open(unique_name)
    assert (kept == 9).all()  # still mapped, still its frame
    del kept  # unpins into the still-mapped memory


def test_readers_plus_one_pins_is_an_error(unique_name):
    R = 3
    with ss.Frames.create(unique_name, 64, np.uint8, readers=R) as fr:
        cms = [fr.latest() for _ in range(R + 1)]
        arrays = [cm.__enter__() for cm in cms[:R]]
        with pytest.raises(ValueError, match=r"pins are held.*readers=3"):
            cms[R].__enter__()
        for i in range(20):  # the writer is not blocked by R held frames
            fr.publish(np.full(64, i, np.uint8))
        for cm in cms[:R]:
            cm.__exit__(None, None, None)
        del arrays
        with fr.latest() as a:
            assert (a == 19).all()


def test_threads_share_one_handle(unique_name):
    """Loans, pins, waits and a close() from other threads: clear errors, no crash."""
    fr = ss.Frames.create(unique_name, (64, 64), np.uint32, readers=8)
    stop = threading.Event()
    bad, errors = [], []

    def write():
        while not stop.is_set():
            try:
                with fr.loan(timeout=1) as a:
                    a[...] = fr.version + 1
            except ValueError as e:  # closed
                errors.append(str(e))
                return

    def read():
        v = 0
        while not stop.is_set():
            try:
                try:
                    v = fr.wait(since=v, timeout=1)
                except TimeoutError:  # starved for a second on a loaded machine: not an error
                    continue
                cm = fr.latest()
                with cm as a:
                    if not (a == cm.version).all():
                        bad.append(cm.version)
                del a
            except (ValueError, TimeoutError) as e:
                errors.append(str(e))
                return

    ts = [threading.Thread(target=write), threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(4)]
    for t in ts:
        t.start()
    _procctl.until(lambda: fr.version > 10, 30, "many frames")  # then close under them
    time.sleep(0.2)
    v = fr.version
    fr.close()
    stop.set()
    for t in ts:
        t.join(timeout=30)
    assert not bad
    assert v > 10
    assert all("closed" in e or "no frame" in e for e in errors), errors


def test_wait_times_out_and_wakes(unique_name):
    with ss.Frames.create(unique_name, 8, np.uint8) as fr:
        with pytest.raises(TimeoutError):
            fr.wait(since=0, timeout=0.05)
        t = threading.Timer(0.1, lambda: fr.publish(bytes(8)))
        t.start()
        assert fr.wait(since=0, timeout=10, spin=0) == 1
        t.join()


# ------------------------------------------------------------------------- across processes
def test_no_torn_or_changing_frame_under_full_speed_writer(unique_name):
    """A child writer at full speed (each frame the u32 of its version everywhere), two child
    readers checking every frame at pin time and again after using it."""
    with ss.Frames.create(unique_name, (256, 256), np.uint32, readers=4) as fr:  # 256 KiB frames
        readers = [Child("reader", unique_name, 200) for _ in range(2)]
        for r in readers:
            r.expect("ready")
        w = Child("writer", unique_name, 60)
        w.expect("ready")
        results = [r.expect("result", timeout=120).split() for r in readers]
        w.p.kill()
        w.p.wait()
        for r in readers:
            assert r.finish() == 0
        for _, seen, bad, distinct in results:
            assert int(seen) == 200 and int(bad) == 0
            assert int(distinct) > 10  # really many different frames
        assert fr.info()["pins_held"] == 0


def test_r_readers_in_processes_pin_at_once(unique_name):
    R = 3
    with ss.Frames.create(unique_name, 4096, np.uint8, readers=R) as fr:
        fr.publish(np.full(4096, 1, np.uint8))
        kids = [Child("pin", unique_name) for _ in range(R)]
        for k in kids:
            k.expect("pinned")
        assert fr.info()["pins_held"] == R
        with pytest.raises(ValueError, match="pins are held"):
            with fr.latest():
                pass
        for i in range(100):
            fr.publish(np.full(4096, i, np.uint8))
        for k in kids:
            k.p.stdin.close()
            assert k.expect("same") == "same 1"  # held frames did not change
            assert k.finish() == 0
        assert fr.info()["pins_held"] == 0


def test_killed_and_stopped_readers_ring_recovers(unique_name):
    """SIGKILL / SIGSTOP on Linux; TerminateProcess / NtSuspendProcess on Windows (_procctl)."""
    with ss.Frames.create(unique_name, 65536, np.uint8, readers=2) as fr:
        fr.publish(np.full(65536, 1, np.uint8))
        killed, stopped = Child("pin", unique_name), Child("pin", unique_name)
        killed.expect("pinned")
        fr.publish(np.full(65536, 2, np.uint8))
        stopped.expect("pinned")
        _procctl.stop(stopped.p)
        _procctl.kill(killed.p)
        killed.p.wait()
        try:
            for i in range(300):  # the writer keeps publishing: two slots are free of live pins
                fr.publish(np.full(65536, 10 + i % 200, np.uint8))
            # The table is full (one dead, one stopped): a reader takes the dead entry back.
            with fr.latest() as a:
                assert (a == 10 + 299 % 200).all()
            del a
            info = fr.info()
            assert info["reclaimed"] >= 1 and info["pins_held"] == 1  # only the stopped one
            one = fr.latest().__enter__()  # the one free entry
            with pytest.raises(ValueError, match="pins are held"):  # the stopped reader is alive
                fr.latest().__enter__()
            del one  # the pin goes with the array
        finally:
            _procctl.cont(stopped.p)
        stopped.p.stdin.close()
        assert stopped.expect("same") == "same 1"  # never written while it was stopped
        assert stopped.finish() == 0
        assert fr.info()["pins_held"] == 0


def test_writer_killed_mid_loan_is_never_published(unique_name):
    with ss.Frames.create(unique_name, 4096, np.uint8) as fr:
        fr.publish(np.full(4096, 3, np.uint8))
        w = Child("loan", unique_name)
        w.expect("loaning")
        assert fr.info()["writer_pid"] == w.p.pid
        w.p.kill()  # SIGKILL / TerminateProcess, holding the writer lock
        w.p.wait()
        assert fr.version == 1
        with fr.latest() as a:
            assert (a == 3).all()
        del a
        assert fr.publish(np.full(4096, 4, np.uint8), timeout=10) == 2  # the lock is taken over
        assert fr.info()["recoveries"] == 1
        with fr.latest() as a:
            assert (a == 4).all()


@POSIX_SIGNALS
def test_ctrl_c_interrupts_wait(unique_name):
    with ss.Frames.create(unique_name, 8, np.uint8):
        c = Child("wait", unique_name)
        c.expect("ready")
        time.sleep(0.2)
        c.p.send_signal(signal.SIGINT)
        assert c.expect("interrupted", timeout=10) == "interrupted"
        assert c.finish() == 0


# ------------------------------------------------------------------------- corrupt segments
FUZZ_EXAMPLES = int(os.environ.get("SST_FRAMES_FUZZ_EXAMPLES", "300"))

WORKER = textwrap.dedent(r"""
    import json, sys
    import numpy as np
    import sharedstate as ss
    for line in sys.stdin:
        name = line.strip()
        try:
            fr = ss.Frames.open(name)
            try:
                fr.info()
                with fr.latest() as a:
                    a.tobytes()
                del a
                try:
                    with fr.loan(timeout=0.01) as a:
                        a.view(np.uint8)[...] = 1
                    fr.publish(bytes(fr.nbytes), timeout=0.01)
                except TimeoutError:
                    pass  # the lock word is input too: a live owner (e.g. pid 1)
                try:
                    fr.wait(since=fr.version, timeout=0)
                except TimeoutError:
                    pass
                out = {"ok": True}
            finally:
                fr.close()
        except Exception as e:
            out = {"ok": False, "type": type(e).__name__, "mro": [c.__name__ for c in type(e).__mro__], "msg": str(e)[:300]}
        print(json.dumps(out), flush=True)
""")


def _fnv1a(data: bytes, h: int = 2166136261) -> int:
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def _fix_checksum(data: bytearray) -> None:
    """docs/FORMAT.md (Frames): FNV-1a of bytes 8..127 (checksum as 0) and the field table at 320."""
    if len(data) < 128:
        return
    count = struct.unpack_from("<I", data, 36)[0]
    end = 320 + 48 * count
    if count > 4096 or end > len(data):
        return
    imm = bytearray(data[8:128])
    imm[40:44] = bytes(4)
    struct.pack_into("<I", data, 48, _fnv1a(bytes(data[320:end]), _fnv1a(bytes(imm))))


FRAMES_FIELDS = [(0, "<Q"), (8, "<H"), (10, "<H"), (12, "<I"), (16, "<Q"), (24, "<I"), (28, "<I"), (32, "<I"),
                 (36, "<I"), (40, "<I"), (44, "<I"), (64, "<I"), (68, "<I"), (72, "<I"), (76, "<I"), (80, "<I"),
                 (84, "<I"), (88, "<I"), (92, "<I"), (96, "<I"), (116, "<I"), (120, "<Q"),
                 (128, "<Q"), (192, "<Q"), (192, "<H"), (256, "<I"),
                 (320 + 32, "<I"), (320 + 36, "<I"), (320 + 40, "B"), (320 + 41, "B"), (320 + 100, "<I")]
INTERESTING = [0, 1, 2, 3, 4, 5, 6, 7, 8, 63, 64, 255, 256, 320, 4096, 2**16 - 1, 2**16, 2**31, 2**32 - 1,
               2**63, 2**64 - 1]


@pytest.mark.skipif(not LINUX, reason="plants segment bytes in /dev/shm")
def test_corrupt_frames_segments_never_crash(unique_name):
    import fcntl
    import random

    rnd = random.Random(1234)
    seeds = []
    for shape, dtype in (((8, 8, 3), np.uint8), ((5,), np.dtype([("a", "<f8"), ("b", "<i2", (3,))]))):
        nm = f"{unique_name}-seed"
        with ss.Frames.create(nm, shape, dtype, readers=2, persistent=True) as fr:
            fr.publish(bytes(fr.nbytes))
            with fr.latest():
                pass
        p = Path("/dev/shm") / nm
        seeds.append(p.read_bytes())
        p.unlink()
    w = subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         bufsize=1)
    outcomes: dict = {}
    try:
        for i in range(FUZZ_EXAMPLES):
            data = bytearray(rnd.choice(seeds))
            for _ in range(rnd.randint(1, 3)):
                what = rnd.random()
                if what < 0.6:
                    off, fmt = rnd.choice(FRAMES_FIELDS)
                    bits = struct.calcsize(fmt) * 8
                    value = rnd.choice(INTERESTING + [rnd.getrandbits(bits)]) % 2**bits
                    if off + struct.calcsize(fmt) <= len(data):
                        struct.pack_into(fmt, data, off, value)
                elif what < 0.75 and len(data) >= 420:  # a pin entry: owner and slot
                    pins = struct.unpack_from("<I", data, 80)[0]
                    off = (pins if pins < len(data) - 32 else 384) + 16 * rnd.randint(0, 1)
                    struct.pack_into("<QI", data, off, rnd.choice([0, 1 << 32, os.getpid() << 32, 2**64 - 1]),
                                     rnd.choice([0, 1, 3, 4, 2**32 - 1, rnd.getrandbits(32)]))
                elif what < 0.9 and data:
                    pos = rnd.randrange(len(data))
                    data[pos] ^= 1 << rnd.randrange(8)
                else:
                    data = data[:rnd.randrange(len(data) + 1)]
            if rnd.random() < 0.7:
                _fix_checksum(data)
            if len(data) >= 48 and rnd.random() < 0.5:
                data[44] |= 1  # persistent: open() keeps it though nobody holds it
                _fix_checksum(data)
            name = f"{unique_name}-{i}"
            path = Path("/dev/shm") / name
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
            try:
                os.write(fd, bytes(data))
                fcntl.flock(fd, fcntl.LOCK_SH)  # a live holder
                w.stdin.write(name + "\n")
                w.stdin.flush()
                line = w.stdout.readline()
            finally:
                os.close(fd)
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
            if not line:
                pytest.fail(f"a mutated frames segment CRASHED the child (rc {w.wait()}): {bytes(data[:512]).hex()}")
            res = json.loads(line)
            if not res["ok"]:
                assert set(res["mro"]) & {"ValueError", "OSError", "TimeoutError"}, res
                assert res["msg"] and (name in res["msg"] or "closed" in res["msg"]), res
            key = "ok" if res["ok"] else res["type"]
            outcomes[key] = outcomes.get(key, 0) + 1
    finally:
        w.stdin.close()
        w.wait(timeout=30)
    print(f"\nframes fuzz: {FUZZ_EXAMPLES} segments, outcomes {outcomes}")
    assert outcomes.get("ok", 0) > 0 and outcomes.get("CorruptSegmentError", 0) > 0


# ------------------------------------------------------------------------- the CLI knows the kind
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sharedstate", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(not LINUX, reason="cleanup reads /dev/shm")
def test_cli_cleanup_removes_stale_frames(unique_name):
    # A stale one (its only holder exited without closing): cleanup removes it.
    code = (f"import sharedstate as ss, numpy as np, os\n"
            f"fr = ss.Frames.create({unique_name + '-stale'!r}, 8, np.uint8)\n"
            f"os._exit(0)\n")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
    assert (Path("/dev/shm") / (unique_name + "-stale")).exists()
    r = _cli("cleanup")
    assert f"removed {unique_name}-stale" in r.stdout, r.stdout


def test_cpp_writer_full_speed_python_reader_never_torn(unique_name):
    """The C++ simulator renders frames at full speed (alpha = frame number in every pixel);
    each frame Python holds is whole at pin time and after use."""
    from sharedstate._demo import simulator_path

    sim = subprocess.Popen([str(simulator_path()), unique_name, "2", "0", "--frames", "160x120"],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert sim.stdout.readline().startswith("ready")
        with ss.Frames.open(unique_name) as fr:
            assert fr.shape == (120, 160, 4) and fr.dtype == np.uint8
            v, seen, bad, versions = 0, 0, 0, set()
            while sim.poll() is None and seen < 2000:
                try:
                    v = fr.wait(since=v, timeout=1)
                except TimeoutError:
                    continue
                cm = fr.latest()
                with cm as a:
                    alpha = cm.version % 256
                    ok = bool(np.all(a[:, :, 3] == alpha))
                    float(a.mean())  # use it while the writer runs
                    ok = ok and bool(np.all(a[:, :, 3] == alpha))
                del a
                bad += not ok
                seen += 1
                versions.add(cm.version)
            assert bad == 0 and seen > 50 and len(versions) > 50
        assert sim.wait(timeout=30) == 0
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.wait()
