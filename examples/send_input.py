"""Send input events to the game through its Queue (see game_input.cpp).

    ./game_input GameInput &
    python send_input.py GameInput [--events 1000]
"""
from __future__ import annotations

import argparse
import struct
import sys
import time

import sharedstate as ss

EVENT = struct.Struct("<IiiI")  # type, a, b, seq: input_events.hpp's InputEvent
KEY_DOWN, KEY_UP, MOUSE_MOVE, QUIT = 1, 2, 3, 4


def open_when_ready(name: str, within: float) -> ss.Queue:
    deadline = time.monotonic() + within
    while True:
        try:
            return ss.Queue.open(name)
        except FileNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("name")
    ap.add_argument("--events", type=int, default=1000)
    args = ap.parse_args(argv)
    try:
        q = open_when_ready(args.name, 5.0)
    except FileNotFoundError:
        print(f"send_input: no game queue named {args.name!r}", file=sys.stderr)
        return 1
    with q:
        seq = 0
        for i in range(args.events):
            seq += 1
            if i % 4 == 0:
                ev = EVENT.pack(KEY_DOWN, ord("W"), 0, seq)
            elif i % 4 == 1:
                ev = EVENT.pack(KEY_UP, ord("W"), 0, seq)
            else:
                ev = EVENT.pack(MOUSE_MOVE, 1, -2, seq)
            q.put(ev, timeout=5.0)  # blocks (GIL released) only while the queue is full
        q.put(EVENT.pack(QUIT, 0, 0, seq + 1), timeout=5.0)
    print(f"send_input: {args.events + 1} events sent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
