"""The frames section of bench/compare.py (also runnable alone: python bench/frames_bench.py).

Cross-process: a writer process has a complete frame and makes it available (t0); the
reader process, spinning in its wait, ends up holding it as a numpy array (t1). p50 of
t1 - t0 per frame size, one frame in flight at a time (the reader asks for the next one
through a tiny control block). Mechanisms:

  ss_frames_cxx sharedstate.Frames with the game's side in C++ (bench/cpp/frames_peer.cpp, built
                here with the C++ compiler found): it fills a loaned slot in place before t0,
                then commit(); the Python reader wait()s and holds latest() (zero-copy, pinned).
  ss_frames     the same with a Python writer (``with fr.loan() as a:``, rendered in place).
  ss_frames_copy the same Python writer, rendering by copying a ready frame from a private numpy
                array (``a[...] = frame``): the copy reads 8 MiB through the cache before t0.
  iox_slice     iceoryx2 publish-subscribe of a u8 Slice: the writer fills loan_slice_uninit()
                in place before t0, then send(); the reader busy-polls receive() and holds a
                numpy array over the sample's memory (zero-copy; the sample is kept while held).
  zenoh_shm     eclipse-zenoh with its shared-memory provider (peer to peer over loopback): the
                writer fills an alloc()ed ZShmMut before t0, then put(); the reader's subscriber
                callback holds np.frombuffer(sample.payload.to_bytes()) (zenoh has no buffer
                protocol: one copy, the least numpy can get).
  ss_state      sharedstate.SharedState with one u1 array field of the frame's size: the
                writer write(data=frame) (two copies, the latch), the reader read_into a
                preallocated buffer (one copy) viewed as numpy.
  shm_seqlock   stdlib multiprocessing.shared_memory with a hand-rolled seqlock: the writer
                copies the frame between two sequence bumps, the reader copies it out and
                retries if the sequence moved.

Frames' writer fills the next slot before the reader asks (rendering is the game's work, not
the transport's), so t0 is its commit. Every in-place writer (C++ peer, ss_frames, iox_slice)
renders the same way, :func:`_render`: the C library's memset of the whole slot (for large
sizes glibc streams it past the cache) and the frame number in the first byte. A render that
reads its source through the cache (ss_frames_copy) leaves the reader's own code and data
evicted on this 2-vCPU VM, so its next wake costs more whatever carried the frame (see
bench/README.md, "Frames across sizes"); the copying mechanisms copy after t0 (their publish is
the copy). t0 and t1 are time.monotonic_ns() (CLOCK_MONOTONIC: the same clock in both processes).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import struct
import sys
import time
import uuid
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIZES = (64, 4096, 65536, 1 << 20, 8 << 20, 32 << 20)
MECHS = ("ss_frames_cxx", "ss_frames", "ss_frames_copy", "ss_state", "shm_seqlock", "iox_slice", "zenoh_shm")
NAMES = {"ss_frames_cxx": "sharedstate Frames, C++ writer (zero-copy, pinned)",
         "ss_frames": "sharedstate Frames, Python writer (zero-copy, pinned)",
         "ss_frames_copy": "sharedstate Frames, Python writer copying a ready frame into the loan",
         "ss_state": "sharedstate SharedState (array field)",
         "shm_seqlock": "stdlib shared_memory + hand-rolled seqlock copy",
         "zenoh_shm": "zenoh shared-memory pub/sub (one copy to numpy)",
         "iox_slice": "iceoryx2 pub/sub, loaned slice (zero-copy, busy-polling receive)",
         "memcpy": "(reference) one memcpy of the frame, one process"}
CTX = mp.get_context("fork")


def _pin(cpu):
    try:
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        pass


class Ctrl:
    """Control block: [0] request number (reader -> writer), [1] t0 of the frame answering it,
    [2] the frame the writer has ready (writer -> reader)."""

    def __init__(self, name, create):
        from multiprocessing import shared_memory
        self.shm = shared_memory.SharedMemory(name=name, create=create, size=64)
        self.a = np.ndarray((8,), np.int64, self.shm.buf)

    def close(self, unlink=False):
        del self.a
        self.shm.close()
        if unlink:
            self.shm.unlink()


def _render(arr, i):
    """Frame i rendered in place, exactly as bench/cpp/frames_peer.cpp does it: memset of the
    whole buffer (the same C library call), then the frame number in the first byte."""
    import ctypes
    ctypes.memset(arr.ctypes.data, 7, arr.nbytes)
    arr[0] = i & 255


def _writer(mech, name, ctrl_name, size, n, cpu, ready):
    import sharedstate as ss
    _pin(cpu)
    ctrl = Ctrl(ctrl_name, False)
    a = ctrl.a
    frame = np.full(size, 7, np.uint8)
    frames = mech in ("ss_frames", "ss_frames_copy")
    if frames:
        fr = ss.Frames.open(name)
    elif mech == "ss_state":
        st = ss.SharedState.open(name)
    else:
        from multiprocessing import shared_memory
        shm = shared_memory.SharedMemory(name=name)
        seq = np.ndarray((1,), np.uint64, shm.buf, 0)
        data = np.ndarray((size,), np.uint8, shm.buf, 64)
    ready.set()
    for i in range(1, n + 1):
        frame[:8] = i & 255
        if frames:
            # Rendered in place before the frame exists (the game's work, not transport): loan
            # and fill, then wait for the reader's request and commit.
            cm = fr.loan()
            buf = cm.__enter__()
            if mech == "ss_frames":
                _render(buf, i)
            else:
                buf[...] = frame
            del buf
        a[2] = i  # frame i is ready to go: the reader may ask for it
        while a[0] != i:
            pass
        if frames:
            a[1] = time.monotonic_ns()
            cm.__exit__(None, None, None)  # commit
        elif mech == "ss_state":
            a[1] = time.monotonic_ns()
            st.write(data=frame)
        else:
            a[1] = time.monotonic_ns()
            s = int(seq[0])
            seq[0] = s + 1
            data[...] = frame
            seq[0] = s + 2
    del a
    ctrl.close()


def _iox_service(name, size):
    import ctypes
    import iceoryx2 as iox
    try:
        iox.set_log_level(iox.LogLevel.Error)
    except Exception:  # noqa: BLE001
        pass
    node = iox.NodeBuilder.new().create(iox.ServiceType.Ipc)
    b = node.service_builder(iox.ServiceName.new(name)).publish_subscribe(iox.Slice[ctypes.c_uint8])
    svc = b.subscriber_max_buffer_size(2).history_size(0).enable_safe_overflow(True).open_or_create()
    return iox, node, svc


def _iox_writer(name, ctrl_name, size, n, cpu, ready):
    _pin(cpu)
    ctrl = Ctrl(ctrl_name, False)
    a = ctrl.a
    iox, node, svc = _iox_service(name, size)
    pub = svc.publisher_builder().initial_max_slice_len(size).create()
    dl = time.monotonic() + 20
    while svc.dynamic_config.number_of_subscribers == 0 and time.monotonic() < dl:
        pub.update_connections()
        time.sleep(0.001)
    ready.set()
    for i in range(1, n + 1):
        smp = pub.loan_slice_uninit(size)
        v = np.frombuffer(smp.payload().as_memory_view(), np.uint8)
        _render(v, i)  # rendered in place (not timed)
        del v
        smp = smp.assume_init()
        a[2] = i
        while a[0] != i:
            pass
        a[1] = time.monotonic_ns()
        smp.send()
    del a, pub, svc, node
    ctrl.close()


def _zenoh_writer(key, ctrl_name, size, n, cpu, connect, ready):
    """zenoh_shm's writer (a spawned process: zenoh's runtime threads do not survive fork)."""
    import zenoh
    _pin(cpu)
    ctrl = Ctrl(ctrl_name, False)
    a = ctrl.a
    s = zenoh.open(_zenoh_config(None, connect))
    pub = s.declare_publisher(key, congestion_control=zenoh.CongestionControl.BLOCK, express=True)
    provider = zenoh.shm.ShmProvider.default_backend(max(size, 4096) * 4)
    frame = bytearray(b"\x07" * size)
    dl = time.monotonic() + 20
    while not getattr(pub.matching_status, "matching", True) and time.monotonic() < dl:
        time.sleep(0.01)
    ready.set()
    for i in range(1, n + 1):
        frame[0] = i & 255
        buf = provider.alloc(size, policy=zenoh.shm.BlockOn(zenoh.shm.GarbageCollect()))
        buf[0:size] = bytes(frame)  # rendered into the shared buffer (not timed)
        a[2] = i
        while a[0] != i:
            yield_cpu()  # zenoh's own threads share this pinned CPU: spinning would starve them
        a[1] = time.monotonic_ns()
        pub.put(buf)
    time.sleep(0.2)  # let the last sample leave before the session closes
    del a
    ctrl.close()
    s.close()


yield_cpu = getattr(os, "sched_yield", lambda: time.sleep(0))


def _zenoh_config(listen, connect):
    import json
    import zenoh
    c = zenoh.Config()
    c.insert_json5("mode", json.dumps("peer"))
    c.insert_json5("scouting/multicast/enabled", "false")
    c.insert_json5("listen/endpoints", json.dumps([listen] if listen else []))
    if connect:
        c.insert_json5("connect/endpoints", json.dumps([connect]))
    return c


def _free_port():
    import socket
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        return int(so.getsockname()[1])


def cxx_peer(out_dir=None):
    """bench/cpp/frames_peer.cpp built with the C++ compiler here: (path, None) or (None, why)."""
    import shutil
    import subprocess
    src, inc = HERE / "cpp" / "frames_peer.cpp", HERE.parent / "cpp" / "include"
    if not src.exists() or not inc.exists():
        return None, "no source checkout (bench/cpp/frames_peer.cpp, cpp/include)"
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if not cxx:
        return None, "no C++ compiler (set CXX)"
    out = Path(out_dir or HERE / "results")
    out.mkdir(parents=True, exist_ok=True)
    exe = out / ("frames_peer.exe" if sys.platform == "win32" else "frames_peer")
    newest = max([src.stat().st_mtime] + [q.stat().st_mtime for q in inc.rglob("*.hpp")])
    if not exe.exists() or exe.stat().st_mtime < newest:
        r = subprocess.run([cxx, "-O2", "-std=c++17", "-DNDEBUG", f"-I{inc}", str(src), "-o", str(exe), "-pthread"],
                           capture_output=True, text=True, timeout=600)
        if r.returncode:
            return None, f"frames_peer failed to build: {r.stderr[-300:]}"
    return exe, None


def _reader_one(mech, obj, state):
    """Block (spinning) until the next frame, return it as a numpy array held by us."""
    if mech == "iox_slice":
        state.pop("sample", None)  # the previous frame goes back to the writer's pool
        sub = obj[0]
        smp = sub.receive()
        while smp is None:
            smp = sub.receive()
        state["sample"] = smp  # the array below is a view of its memory: hold it while used
        return np.frombuffer(smp.payload().as_memory_view(), np.uint8), None
    if mech == "zenoh_shm":
        ev, got = obj
        if not ev.wait(30):
            raise TimeoutError("zenoh_shm: no sample within 30 s")
        ev.clear()
        arr, t1 = got.pop()
        state["t1"] = t1
        return arr, None
    if mech in ("ss_frames", "ss_frames_cxx", "ss_frames_copy"):
        state["v"] = obj.wait(since=state["v"], timeout=30)
        cm = obj.latest()
        arr = cm.__enter__()
        return arr, cm
    if mech == "ss_state":
        state["v"] = obj.wait(since=state["v"], timeout=30)
        obj.read_into(state["buf"])
        return state["arr"], None
    seq, data, out = obj
    while True:
        s1 = int(seq[0])
        if s1 & 1 or s1 == state["v"]:
            continue
        out[...] = data
        if int(seq[0]) == s1:
            state["v"] = s1
            return out, None


def measure(mech, size, n, cpu_parent=0, cpu_child=1):
    import sharedstate as ss
    name = f"sst-bench-frames-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    ctrl_name = name + "-ctrl"
    ctrl = Ctrl(ctrl_name, True)
    a = ctrl.a
    state = {"v": 0}
    holder = None
    sess = None
    if mech in ("ss_frames", "ss_frames_cxx", "ss_frames_copy"):
        obj = holder = ss.Frames.create(name, size, np.uint8, readers=4)
    elif mech == "iox_slice":
        _, node, svc = _iox_service(name, size)
        obj = (svc.subscriber_builder().create(), svc, node)
    elif mech == "zenoh_shm":
        import threading
        import zenoh
        port = _free_port()
        sess = zenoh.open(_zenoh_config(f"tcp/127.0.0.1:{port}", None))
        ev, got = threading.Event(), []

        def cb(sample):
            arr = np.frombuffer(sample.payload.to_bytes(), np.uint8)  # the reader holds it as numpy
            got.append((arr, time.monotonic_ns()))
            ev.set()
        sub = sess.declare_subscriber(f"bench/{name}", cb)
        obj = (ev, got)
    elif mech == "ss_state":
        obj = holder = ss.SharedState.create(name, ss.Layout([("data", "u1", (size,))]))
        state["buf"] = bytearray(size)
        state["arr"] = np.frombuffer(state["buf"], np.uint8)
    else:
        from multiprocessing import shared_memory
        holder = shared_memory.SharedMemory(name=name, create=True, size=64 + size)
        obj = (np.ndarray((1,), np.uint64, holder.buf, 0), np.ndarray((size,), np.uint8, holder.buf, 64),
               np.empty(size, np.uint8))
    if mech == "ss_frames_cxx":
        import subprocess
        exe, why = cxx_peer()
        if why:
            holder.close()
            ctrl.close(unlink=True)
            raise RuntimeError(why)
        p = subprocess.Popen([str(exe), name, ctrl_name, str(n)], stdout=subprocess.PIPE, text=True,
                             preexec_fn=(lambda: _pin(cpu_child)) if sys.platform != "win32" else None)
        p.is_alive = lambda: p.poll() is None
        p.join = lambda t: p.wait(t)
        ready = None
    elif mech == "iox_slice":
        ready = CTX.Event()
        p = CTX.Process(target=_iox_writer, args=(name, ctrl_name, size, n, cpu_child, ready))
        p.start()
    elif mech == "zenoh_shm":
        sctx = mp.get_context("spawn")
        ready = sctx.Event()
        p = sctx.Process(target=_zenoh_writer,
                         args=(f"bench/{name}", ctrl_name, size, n, cpu_child, f"tcp/127.0.0.1:{port}", ready))
        p.start()
    else:
        ready = CTX.Event()
        p = CTX.Process(target=_writer, args=(mech, name, ctrl_name, size, n, cpu_child, ready))
        p.start()
    _pin(cpu_parent)
    lat = []
    spin = yield_cpu if mech == "zenoh_shm" else (lambda: None)  # the subscriber's threads share this CPU
    try:
        if ready is None:
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError("frames_peer did not start")
        elif not ready.wait(60):
            raise TimeoutError(f"{mech}: writer did not start")
        for i in range(1, n + 1):
            while a[2] != i:  # the writer has frame i (Frames: rendered in its slot), not timed
                spin()
            a[0] = i
            arr, cm = _reader_one(mech, obj, state)
            t1 = state.pop("t1", None) or time.monotonic_ns()
            ok = int(arr[0]) == i & 255
            if cm is not None:
                cm.__exit__(None, None, None)
            del arr
            if not ok:
                raise AssertionError(f"{mech}: frame {i} not the one asked for")
            lat.append((t1 - int(a[1])) / 1000.0)
        p.join(30)
    finally:
        if p.is_alive():
            p.kill()
        if mech == "ss_frames_cxx":
            p.wait(10)
            p.stdout.close()
        if sess is not None:
            sub.undeclare()
            sess.close()
            del obj, got
        del a
        ctrl.close(unlink=True)
        if mech in ("zenoh_shm",):
            pass
        elif mech == "iox_slice":
            state.pop("sample", None)
            del obj
        elif mech == "shm_seqlock":
            del obj
            holder.close()
            holder.unlink()
        else:
            holder.close()
    warm = lat[len(lat) // 10:] or lat
    return {"p50_us": statistics.median(warm), "p90_us": sorted(warm)[int(0.9 * (len(warm) - 1))], "n": len(warm)}


def memcpy_us(size, n):
    """The reference line: one copy of the frame in one process (numpy.copyto, p50 µs)."""
    src, dst = np.full(size, 7, np.uint8), np.empty(size, np.uint8)
    ts = []
    for _ in range(n):
        t = time.perf_counter_ns()
        np.copyto(dst, src)
        ts.append((time.perf_counter_ns() - t) / 1000.0)
    return statistics.median(ts)


def _n(mech, size, quick):
    n = 300 if quick else 1000
    if size >= (1 << 20):
        # The zero-copy mechanisms cost one render (a memset) per frame: enough frames for a
        # p50 that a noisy VM does not move much; the copying ones are slower per frame.
        zero_copy = mech in ("ss_frames_cxx", "ss_frames", "ss_frames_copy", "iox_slice")
        n = (100 if quick else 400) if zero_copy else (40 if quick else 120)
    if mech in ("ss_state", "shm_seqlock", "zenoh_shm") and size >= (8 << 20):
        n = 12 if quick else 30
    return n


def run(quick=False, cpu_parent=0, cpu_child=1, log=print, mechs=MECHS, sizes=SIZES):
    rows = {}
    import importlib.util
    for mech in mechs:
        rows[mech] = {}
        need = {"iox_slice": "iceoryx2", "zenoh_shm": "zenoh"}.get(mech)
        if need and importlib.util.find_spec(need) is None:
            rows[mech] = {str(size): {"skipped": f"{need} is not installed"} for size in sizes}
            continue
        for size in sizes:
            if mech == "zenoh_shm" and size < 4096:
                rows[mech][str(size)] = {"skipped": "below zenoh's shared-memory threshold (3072 B)"}
                continue
            try:
                r = measure(mech, size, _n(mech, size, quick), cpu_parent, cpu_child)
                log(f"  frames {mech:13s} {size:>9d} B  p50 {r['p50_us']:10.1f} us  (n={r['n']})")
            except Exception as e:  # noqa: BLE001 - reported, the run goes on
                r = {"skipped": f"failed: {type(e).__name__}: {e}"[:200]}
                log(f"  frames {mech} {size}: {r['skipped']}")
            rows[mech][str(size)] = r
    rows["memcpy"] = {str(size): {"p50_us": memcpy_us(size, 20 if size >= (8 << 20) else 200)} for size in sizes}
    return {"sizes": list(sizes), "rows": rows}


def targets(sec):
    def p50(m, s):
        return sec["rows"].get(m, {}).get(str(s), {}).get("p50_us")
    out = []
    for mech, who in (("ss_frames_cxx", "C++ writer"), ("ss_frames", "Python writer")):
        small, big = p50(mech, 64), p50(mech, 8 << 20)
        flat = big / small if big and small else None
        out.append({"target": f"Frames commit->numpy p50, {who}: 8 MiB / 64 B", "measured": flat, "limit": "<= 2.0",
                    "status": "N/A" if flat is None else ("PASS" if flat <= 2.0 else "MISS")})
    ssbig = p50("ss_state", 8 << 20)
    for mech, who in (("ss_frames_cxx", "C++ writer"), ("ss_frames", "Python writer")):
        big = p50(mech, 8 << 20)
        speed = ssbig / big if ssbig and big else None
        out.append({"target": f"SharedState 8 MiB p50 / Frames 8 MiB p50, {who} (times faster)", "measured": speed,
                    "limit": ">= 100", "status": "N/A" if speed is None else ("PASS" if speed >= 100 else "MISS")})
    return out


def markdown(sec, plot_name=None):
    sizes = sec["sizes"]
    hdr = "| mechanism | " + " | ".join(_size(s) for s in sizes) + " |"
    L = ["## Frames: writer has a frame -> reader holds it as a numpy array (cross-process, p50 µs)", "", hdr,
         "| --- |" + " ---: |" * len(sizes)]
    for m, by in sec["rows"].items():
        cells = []
        for s in sizes:
            r = by.get(str(s), {})
            cells.append("–" if "skipped" in r or not r else f"{r['p50_us']:.1f}")
        name = NAMES.get(m, m)
        L.append(f"| {'**' + name + '**' if m.startswith('ss_frames') else name} | " + " | ".join(cells) + " |")
    skipped = set()
    for m, by in sec["rows"].items():
        why = {r["skipped"] for r in by.values() if "skipped" in r}
        if len(why) == 1 and all("skipped" in r for r in by.values()):
            skipped.add(f"{m}: {why.pop()}")
        else:
            skipped |= {f"{m} {_size(int(s))}: {r['skipped']}" for s, r in by.items() if "skipped" in r}
    if skipped:
        L += ["", "Not measured: " + "; ".join(sorted(skipped)) + "."]
    L += ["", "| target | measured | limit | status |", "| --- | ---: | --- | --- |"]
    for t in targets(sec):
        v = "–" if t["measured"] is None else f"{t['measured']:.2f}"
        L.append(f"| {t['target']} | {v} | {t['limit']} | {t['status']} |")
    if plot_name:
        L += ["", f"![frames: commit to numpy, p50 by frame size]({plot_name})"]
    return "\n".join(L)


def plot(sec, path):
    """p50 against the frame size, log-log, one line per mechanism; (path, None) or (None, why)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as e:  # noqa: BLE001
        return None, f"skipped: matplotlib not installed ({type(e).__name__})"
    fig, ax = plt.subplots(figsize=(8, 5))
    for m, by in sec["rows"].items():
        xs = [s for s in sec["sizes"] if "p50_us" in by.get(str(s), {})]
        ys = [by[str(s)]["p50_us"] for s in xs]
        if not xs:
            continue
        ours = m.startswith("ss_")
        ax.plot(xs, ys, "-o" if ours else ("--" if m != "memcpy" else ":"), lw=2.2 if m.startswith("ss_frames") else 1.2,
                ms=4, label=NAMES.get(m, m))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sec["sizes"], [_size(s) for s in sec["sizes"]])
    ax.set_xlabel("frame size")
    ax.set_ylabel("writer commit -> reader holds numpy array, p50 µs (log)")
    return finish_plot(plt, fig, ax, "Frames, cross-process, processes pinned to different CPUs", path, "upper left", 8)


def finish_plot(plt, fig, ax, title, path, legend_loc, fontsize):
    """Grid, title, legend, save, close (compare.py's plots too): (path, None)."""
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=fontsize, loc=legend_loc)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path), None


def _size(s):
    return f"{s >> 20} MiB" if s >= 1 << 20 else (f"{s >> 10} KiB" if s >= 1024 else f"{s} B")


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    kw = {}
    for arg in sys.argv[1:]:
        if arg.startswith("--mechs="):
            kw["mechs"] = tuple(arg.split("=", 1)[1].split(","))
        if arg.startswith("--sizes="):
            kw["sizes"] = tuple(int(x) for x in arg.split("=", 1)[1].split(","))
    print(f"load: {os.getloadavg() if hasattr(os, 'getloadavg') else '?'}")
    sec = run(quick=quick, **kw)
    print(markdown(sec))
