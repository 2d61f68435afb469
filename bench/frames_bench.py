"""The frames section of bench/compare.py (also runnable alone: python bench/frames_bench.py).

Cross-process: a writer process has a complete frame and makes it available (t0); the
reader process, spinning in its wait, ends up holding it as a numpy array (t1). p50 of
t1 - t0 per frame size, one frame in flight at a time (the reader asks for the next one
through a tiny control block). Mechanisms:

  ss_frames     sharedstate.Frames: the writer fills a loaned slot in place before t0, then
                commit(); the reader wait()s and holds latest() (zero-copy, pinned).
  ss_state      sharedstate.SharedState with one u1 array field of the frame's size: the
                writer write(data=frame) (two copies, the latch), the reader read_into a
                preallocated buffer (one copy) viewed as numpy.
  shm_seqlock   stdlib multiprocessing.shared_memory with a hand-rolled seqlock: the writer
                copies the frame between two sequence bumps, the reader copies it out and
                retries if the sequence moved.

Frames' writer fills the next slot before the reader asks (rendering is the game's work, not
the transport's), so t0 is its commit; the copying mechanisms copy after t0 (their publish is
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
SIZES = (64, 4096, 65536, 1 << 20, 8 << 20)
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


def _writer(mech, name, ctrl_name, size, n, cpu, ready):
    import sharedstate as ss
    _pin(cpu)
    ctrl = Ctrl(ctrl_name, False)
    a = ctrl.a
    frame = np.full(size, 7, np.uint8)
    if mech == "ss_frames":
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
        if mech == "ss_frames":
            # Rendered in place before the frame exists (the game's work, not transport): loan
            # and fill, then wait for the reader's request and commit.
            cm = fr.loan()
            buf = cm.__enter__()
            buf[...] = frame
            del buf
        a[2] = i  # frame i is ready to go: the reader may ask for it
        while a[0] != i:
            pass
        if mech == "ss_frames":
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


def _reader_one(mech, obj, state):
    """Block (spinning) until the next frame, return it as a numpy array held by us."""
    if mech == "ss_frames":
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
    if mech == "ss_frames":
        obj = holder = ss.Frames.create(name, size, np.uint8, readers=4)
    elif mech == "ss_state":
        obj = holder = ss.SharedState.create(name, ss.Layout([("data", "u1", (size,))]))
        state["buf"] = bytearray(size)
        state["arr"] = np.frombuffer(state["buf"], np.uint8)
    else:
        from multiprocessing import shared_memory
        holder = shared_memory.SharedMemory(name=name, create=True, size=64 + size)
        obj = (np.ndarray((1,), np.uint64, holder.buf, 0), np.ndarray((size,), np.uint8, holder.buf, 64),
               np.empty(size, np.uint8))
    ready = CTX.Event()
    p = CTX.Process(target=_writer, args=(mech, name, ctrl_name, size, n, cpu_child, ready))
    p.start()
    _pin(cpu_parent)
    lat = []
    try:
        if not ready.wait(30):
            raise TimeoutError(f"{mech}: writer did not start")
        for i in range(1, n + 1):
            while a[2] != i:  # the writer has frame i (Frames: rendered in its slot), not timed
                pass
            a[0] = i
            arr, cm = _reader_one(mech, obj, state)
            t1 = time.monotonic_ns()
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
        del a
        ctrl.close(unlink=True)
        if mech == "shm_seqlock":
            del obj
            holder.close()
            holder.unlink()
        else:
            holder.close()
    warm = lat[len(lat) // 10:] or lat
    return {"p50_us": statistics.median(warm), "p90_us": sorted(warm)[int(0.9 * (len(warm) - 1))], "n": len(warm)}


def run(quick=False, cpu_parent=0, cpu_child=1, log=print, mechs=("ss_frames", "ss_state", "shm_seqlock")):
    rows = {}
    for mech in mechs:
        rows[mech] = {}
        for size in SIZES:
            n = 300 if quick else 1000
            if size >= (1 << 20):
                n = 40 if quick else 120
            if mech == "ss_state" and size >= (1 << 20):
                n = 12 if quick else 30
            try:
                r = measure(mech, size, n, cpu_parent, cpu_child)
                log(f"  frames {mech:12s} {size:>8d} B  p50 {r['p50_us']:10.1f} us  (n={r['n']})")
            except Exception as e:  # noqa: BLE001 - reported, the run goes on
                r = {"skipped": f"failed: {type(e).__name__}: {e}"[:200]}
                log(f"  frames {mech} {size}: {r['skipped']}")
            rows[mech][str(size)] = r
    return {"sizes": list(SIZES), "rows": rows}


def targets(sec):
    def p50(m, s):
        return sec["rows"].get(m, {}).get(str(s), {}).get("p50_us")
    out = []
    small, big, ssbig = p50("ss_frames", 64), p50("ss_frames", 8 << 20), p50("ss_state", 8 << 20)
    flat = big / small if big and small else None
    out.append({"target": "Frames commit->numpy p50: 8 MiB / 64 B", "measured": flat, "limit": "<= 2.0",
                "status": "N/A" if flat is None else ("PASS" if flat <= 2.0 else "MISS")})
    speed = ssbig / big if ssbig and big else None
    out.append({"target": "SharedState 8 MiB p50 / Frames 8 MiB p50 (times faster)", "measured": speed,
                "limit": ">= 100", "status": "N/A" if speed is None else ("PASS" if speed >= 100 else "MISS")})
    return out


def markdown(sec):
    names = {"ss_frames": "sharedstate Frames (zero-copy, pinned)", "ss_state": "sharedstate SharedState (array field)",
             "shm_seqlock": "stdlib shared_memory + hand-rolled seqlock copy"}
    sizes = sec["sizes"]
    hdr = "| mechanism | " + " | ".join(_size(s) for s in sizes) + " |"
    L = ["## Frames: writer has a frame -> reader holds it as a numpy array (cross-process, p50 µs)", "", hdr,
         "| --- |" + " ---: |" * len(sizes)]
    for m, by in sec["rows"].items():
        cells = []
        for s in sizes:
            r = by.get(str(s), {})
            cells.append("skipped" if "skipped" in r else f"{r['p50_us']:.1f}")
        L.append(f"| {names.get(m, m)} | " + " | ".join(cells) + " |")
    L += ["", "| target | measured | limit | status |", "| --- | ---: | --- | --- |"]
    for t in targets(sec):
        v = "–" if t["measured"] is None else f"{t['measured']:.2f}"
        L.append(f"| {t['target']} | {v} | {t['limit']} | {t['status']} |")
    return "\n".join(L)


def _size(s):
    return f"{s >> 20} MiB" if s >= 1 << 20 else (f"{s >> 10} KiB" if s >= 1024 else f"{s} B")


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    only = [a.split("=", 1)[1].split(",") for a in sys.argv[1:] if a.startswith("--mechs=")]
    print(f"load: {os.getloadavg() if hasattr(os, 'getloadavg') else '?'}")
    sec = run(quick=quick, **({"mechs": tuple(only[0])} if only else {}))
    print(markdown(sec))
