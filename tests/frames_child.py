"""Child processes for tests/test_frames.py: python frames_child.py ROLE NAME [ARGS...].

Each prints one line when it is in position ("ready", "pinned ...", "loaning") and then does
its part; the parent kills, stops or waits for it.
"""
from __future__ import annotations

import sys
import time

import numpy as np

import sharedstate as ss


def writer(name: str, seconds: str) -> int:
    """Full speed: every frame is the u32 value of its version, everywhere."""
    fr = ss.Frames.open(name)
    print("ready", flush=True)
    end = time.monotonic() + float(seconds)
    n = 0
    while time.monotonic() < end:
        with fr.loan() as a:
            a.view(np.uint32)[...] = fr.version + 1  # the version this loan commits as
        n += 1
    print(f"done {n}", flush=True)
    fr.close()
    return 0


def reader(name: str, frames: str) -> int:
    """Checks frames for constancy at pin time and again after "using" them."""
    fr = ss.Frames.open(name)
    print("ready", flush=True)
    v, bad, seen, versions = 0, 0, 0, set()
    for _ in range(int(frames)):
        v = fr.wait(since=v, timeout=120 if v == 0 else 20)  # the first: the writer starts after us
        cm = fr.latest()
        with cm as a:
            w = a.view(np.uint32).reshape(-1)
            first = int(w[0])
            ok = first == cm.version and bool((w == first).all())
            time.sleep(0)  # use it while the writer runs
            float(w.astype(np.float64).sum())
            ok = ok and bool((w == first).all()) and int(w[-1]) == first
            bad += not ok
            seen += 1
            versions.add(cm.version)
        del a, w
    print(f"result {seen} {bad} {len(versions)}", flush=True)
    fr.close()
    return 0


def pin(name: str) -> int:
    """Pins the latest frame and holds it until stdin closes (or the process is killed);
    then checks that the frame did not change while held."""
    fr = ss.Frames.open(name)
    cm = fr.latest()
    with cm as a:
        copy = np.array(a)
        print(f"pinned {cm.version}", flush=True)
        sys.stdin.read()
        same = bool(np.array_equal(a, copy))
    print(f"same {int(same)}", flush=True)
    return 0


def loan(name: str) -> int:
    """Takes a loan, fills half of it, and waits to be killed holding the writer lock."""
    fr = ss.Frames.open(name)
    with fr.loan() as a:
        flat = a.reshape(-1).view(np.uint8)
        flat[: flat.size // 2] = 0xEE
        print("loaning", flush=True)
        time.sleep(120)
    return 0


def wait(name: str) -> int:
    """Blocks in wait() with no timeout: Ctrl-C must interrupt it."""
    fr = ss.Frames.open(name)
    try:
        print("ready", flush=True)
        fr.wait(since=fr.version, timeout=None)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        return 0
    return 1


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    sys.exit(globals()[role](*args))
