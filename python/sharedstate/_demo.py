"""`python -m sharedstate demo`: a C++ game-side simulator feeding Python live.

The simulator (sharedstate-sim, built with the package) creates a SharedState through the
C++ API and writes the controller's x, y and buttons at ~1 kHz, stamping each write with
the monotonic clock. This reader waits for every update, reads a consistent snapshot,
and reports what it saw: values, update rate, frames missed, and the wake-up latency
(write in C++ -> Python awake with the snapshot in hand).
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import List, Optional, TextIO

from . import _core
from ._state import SharedState


def simulator_path() -> Path:
    """The sharedstate-sim executable installed with the package (or $SHAREDSTATE_SIM)."""
    env = os.environ.get("SHAREDSTATE_SIM")
    if env:
        return Path(env)
    exe = "sharedstate-sim.exe" if sys.platform == "win32" else "sharedstate-sim"
    p = Path(__file__).resolve().parent / "bin" / exe
    if not p.exists():
        raise FileNotFoundError(f"{p}: the simulator is built and installed with the package (pip install .)")
    return p


def _percentile(xs: List[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def run(seconds: float = 3.0, rate: float = 1000.0, name: Optional[str] = None, out: TextIO = sys.stdout) -> int:
    name = name or f"sharedstate-demo-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    sim = _start_simulator(name, str(seconds), str(rate))
    if sim is None:
        return 1
    try:
        st = SharedState.open(name)
        print(f"demo: reading '{name}' written by {simulator_path().name} (pid {sim.pid}) at {rate:.0f} Hz "
              f"for {seconds:g} s", file=out)
        print(f"demo: layout {st.layout!r}", file=out)
        lat_us: List[float] = []
        updates = missed = 0
        last_frame = None
        first = time.monotonic()
        last_update = first
        next_print = first + 0.25
        v = st.version
        with st:
            while True:
                try:
                    v = st.wait(since=v, timeout=0.5)
                except TimeoutError:
                    if sim.poll() is not None:
                        break
                    continue
                snap = st.read()
                now = time.monotonic_ns()
                lat_us.append((now - snap.sent_ns) / 1000.0)
                updates += 1
                if last_frame is not None and snap.frame > last_frame + 1:
                    missed += snap.frame - last_frame - 1
                last_frame = snap.frame
                t = last_update = time.monotonic()
                if t >= next_print:
                    next_print = t + 0.25
                    rate_now = updates / max(t - first, 1e-9)
                    buttons = "".join(c if on else "-" for c, on in
                                      (("O", snap.is_open), ("R", snap.is_running), ("P", snap.is_pressing)))
                    print(f"  frame {snap.frame:6d}  x={snap.x:4d} y={snap.y:4d} [{buttons}]  "
                          f"{rate_now:7.0f} updates/s  wake latency p50 {_percentile(lat_us[-500:], 0.5):6.1f} us",
                          file=out, flush=True)
        elapsed = last_update - first
        sim.wait(timeout=10)
        leftover = _core.segment_exists(name)
        print(f"demo: {updates} updates in {elapsed:.2f} s ({updates / max(elapsed, 1e-9):.0f}/s), "
              f"{missed} frames skipped by the reader (the state keeps only the latest value)", file=out)
        print(f"demo: wake latency C++ write -> Python snapshot: p50 {_percentile(lat_us, 0.5):.1f} us, "
              f"p99 {_percentile(lat_us, 0.99):.1f} us, max {max(lat_us) if lat_us else float('nan'):.1f} us", file=out)
        print(f"demo: simulator exit code {sim.returncode}; segment left behind: {'YES' if leftover else 'no'}", file=out)
        return 0 if (updates > 0 and sim.returncode == 0 and not leftover) else 1
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.wait()


def _start_simulator(name: str, *args: str) -> "Optional[subprocess.Popen[str]]":
    """The simulator writing `name`, once it says it is ready (None, reported, if it is not)."""
    sim = subprocess.Popen([str(simulator_path()), name, *args],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = _read_line(sim, timeout=10.0)
    if ready.startswith("ready"):
        return sim
    err = sim.stderr.read() if sim.stderr and sim.poll() is not None else ""
    print(f"demo: the simulator did not start: {ready!r} {err}", file=sys.stderr)
    if sim.poll() is None:
        sim.kill()
    sim.wait()
    return None


def _read_line(proc: "subprocess.Popen[str]", timeout: float) -> str:
    box: List[str] = []
    out = proc.stdout
    assert out is not None
    t = threading.Thread(target=lambda: box.append(out.readline()), daemon=True)
    t.start()
    t.join(timeout)
    return box[0].strip() if box else ""


def run_frames(seconds: float = 3.0, rate: float = 60.0, name: Optional[str] = None, size: str = "1920x1080",
               out: TextIO = sys.stdout) -> int:
    """`demo --frames`: the simulator renders a moving RGBA test pattern into Frames slots at
    `rate` Hz; Python holds each new frame as a numpy array (zero-copy, pinned) and reports
    frames/s, frames skipped, whole-frame checks and the commit-to-view latency."""
    import numpy as np

    from ._frames import Frames

    name = name or f"sharedstate-demo-frames-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    sim = _start_simulator(name, str(seconds), str(rate), "--frames", size)
    if sim is None:
        return 1
    try:
        fr = Frames.open(name)
        h, w, _ = fr.shape
        print(f"demo: reading frames '{name}' ({w}x{h} RGBA, {fr.nbytes / 2**20:.1f} MiB each, {fr.info()['slots']} "
              f"slots) rendered by {simulator_path().name} (pid {sim.pid}) at {rate:g} Hz for {seconds:g} s", file=out)
        lat_us: List[float] = []
        frames = skipped = torn = 0
        last_v = None
        first = time.monotonic()
        last_update = first
        next_print = first + 0.5
        v = fr.version
        with fr:
            while True:
                try:
                    v = fr.wait(since=v, timeout=0.5)
                except TimeoutError:
                    if sim.poll() is not None:
                        break
                    continue
                cm = fr.latest()
                with cm as a:
                    now = _core.monotonic_ns()  # the frame is in hand, as a numpy array
                    lat_us.append((now - cm.commit_ns) / 1000.0)
                    # a sample of pixels: all carry the frame's number in alpha
                    whole = bool((a[::97, ::89, 3] == cm.version % 256).all())
                    bar = int(np.argmax(a[h // 2, :, 2]))
                del a  # the array is the pin: drop it (views of it too) to release the frame
                torn += not whole
                frames += 1
                cv = cm.version
                if last_v is not None and cv > last_v + 1:
                    skipped += cv - last_v - 1
                last_v = cv
                t = last_update = time.monotonic()
                if t >= next_print:
                    next_print = t + 0.5
                    print(f"  frame {cv:6d}  bar at x={bar:4d}  {frames / max(t - first, 1e-9):6.1f} frames/s  "
                          f"commit->view p50 {_percentile(lat_us[-200:], 0.5):7.1f} us", file=out, flush=True)
        elapsed = last_update - first
        sim.wait(timeout=10)
        leftover = _core.segment_exists(name)
        print(f"demo: {frames} frames in {elapsed:.2f} s ({frames / max(elapsed, 1e-9):.1f}/s), {skipped} skipped "
              f"(latest-value: a slow reader sees the newest), {torn} not whole (must be 0)", file=out)
        print(f"demo: latency C++ commit -> Python holds the numpy array: p50 {_percentile(lat_us, 0.5):.1f} us, "
              f"p99 {_percentile(lat_us, 0.99):.1f} us (no copy: {fr.nbytes / 2**20:.1f} MiB frames)", file=out)
        print(f"demo: simulator exit code {sim.returncode}; segment left behind: {'YES' if leftover else 'no'}", file=out)
        return 0 if (frames > 0 and torn == 0 and sim.returncode == 0 and not leftover) else 1
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.wait()
