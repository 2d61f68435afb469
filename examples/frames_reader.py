"""Hold the game's newest frame as a numpy array, zero-copy: frames/s and commit-to-view latency.

    ./frames_writer GameFrames &
    python frames_reader.py GameFrames [--seconds 5]
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import sharedstate as ss


def open_when_ready(name: str, within: float) -> ss.Frames:
    """The game may start after us: retry for a while."""
    deadline = time.monotonic() + within
    while True:
        try:
            return ss.Frames.open(name)  # shape and dtype come from the segment
        except FileNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("name")
    ap.add_argument("--seconds", type=float, default=0, help="stop after this long (default: until the game stops)")
    ap.add_argument("--wait-for-game", type=float, default=5.0, metavar="SECONDS")
    args = ap.parse_args(argv)
    try:
        fr = open_when_ready(args.name, args.wait_for_game)
    except FileNotFoundError:
        print(f"frames_reader: no game is publishing {args.name!r}", file=sys.stderr)
        return 1
    print(f"frames_reader: {args.name} {fr.shape} {fr.dtype}, {fr.nbytes / 2**20:.1f} MiB per frame", flush=True)
    lat_us: list[float] = []
    frames = whole = 0
    start = last_print = time.monotonic()
    with fr:
        v = fr.version
        while not args.seconds or time.monotonic() - start < args.seconds:
            try:
                v = fr.wait(since=v, timeout=2.0)  # GIL released; Ctrl-C works
            except TimeoutError:
                break  # the game stopped
            cm = fr.latest()
            with cm as img:  # read-only, pinned: the game never writes it while we hold it
                lat_us.append((ss._core.monotonic_ns() - cm.commit_ns) / 1000)
                whole += bool(np.all(img[::61, ::67, 3] == (cm.version - 1) % 256))  # all from one frame
                brightness = float(img[::8, ::8, :3].mean())
            del img  # the array is the pin: keep no view of it past the block (copy what you keep)
            frames += 1
            now = time.monotonic()
            if now - last_print >= 1.0:
                last_print = now
                print(f"version {v:5d}  {frames / (now - start):5.1f} frames/s  brightness {brightness:5.1f}  "
                      f"commit->view p50 {np.percentile(lat_us[-120:], 50):7.1f} us", flush=True)
    elapsed = time.monotonic() - start
    p50 = float(np.percentile(lat_us, 50)) if lat_us else float("nan")
    print(f"frames_reader: {frames} frames in {elapsed:.1f} s, {whole} whole, commit->view p50 {p50:.1f} us")
    return 0 if frames and whole == frames else 1


if __name__ == "__main__":
    sys.exit(main())
