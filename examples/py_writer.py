"""Python drives, C++ reads: a bot writes the controller state the game consumes.

    python py_writer.py ControllerMemory [--updates 200]
    ./cpp_reader ControllerMemory       (in another terminal)

Both sides write the same segment: the C++ reader announces itself by setting is_open,
and the writers' lock serializes them (a writer that dies holding it is taken over).
"""
from __future__ import annotations

import argparse
import sys
import time

import sharedstate as ss


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("name")
    ap.add_argument("--updates", type=int, default=200)
    ap.add_argument("--rate", type=float, default=500.0, help="updates per second")
    ap.add_argument("--wait-for-reader", type=float, default=10.0, metavar="SECONDS")
    args = ap.parse_args(argv)
    with ss.SharedState.create(args.name, ss.CONTROLLER) as st:
        st.write(x=0, y=0, is_open=False, is_running=True)
        print(f"ready {args.name}", flush=True)
        deadline = time.monotonic() + args.wait_for_reader
        v = st.version
        while not st.is_open:  # the reader sets it when attached
            try:
                v = st.wait(since=v, timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                print("py_writer: no reader attached", file=sys.stderr)
                return 1
        for i in range(1, args.updates + 1):
            st.write(x=i, y=-i, is_pressing=i % 2 == 1)  # x and y change together, atomically
            time.sleep(1.0 / args.rate)
        st.is_running = False  # one field, atomically: the reader stops
        print(f"py_writer: {args.updates} updates, version {st.version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
