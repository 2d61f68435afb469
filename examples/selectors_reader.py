"""A selectors loop (the shape of a Qt/GLib/Tk integration) that waits on a WaitSet's descriptor.

    python selectors_reader.py ControllerMemory Commands [--seconds S] [--demo]

``ws.fileno()`` (Linux) is readable while a member of the WaitSet is ready, so any event loop
that can watch a descriptor (selectors, QSocketNotifier, GLib.io_add_watch, Tk's
createfilehandler) wakes exactly when the state changes or a command arrives, with no timer and
no polling. On Windows use ``ws.handle`` (a waitable event: QWinEventNotifier,
WaitForMultipleObjects) instead.
"""
from __future__ import annotations

import argparse
import selectors
import sys
import threading
import time

import sharedstate as ss


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("state")
    ap.add_argument("queue")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--demo", action="store_true", help="write a few updates and commands from a thread")
    args = ap.parse_args(argv)
    if sys.platform == "win32":
        print("ws.fileno() is the Linux handle; on Windows wait on ws.handle", file=sys.stderr)
        return 2
    st = ss.SharedState.create(args.state, ss.CONTROLLER, exist_ok=True)
    q = ss.Queue.create(args.queue, capacity=1 << 16, exist_ok=True)
    with st, q:
        ws = ss.WaitSet()
        ws.add(st)
        ws.add(q)
        sel = selectors.DefaultSelector()
        sel.register(ws.fileno(), selectors.EVENT_READ)
        if args.demo:
            def demo() -> None:
                for i in range(3):
                    time.sleep(0.05)
                    st.write(x=i, y=2 * i, is_running=True)
                    q.put(b"jump %d" % i)
            threading.Thread(target=demo, daemon=True).start()
        end = time.monotonic() + args.seconds
        while (left := end - time.monotonic()) > 0:
            if not sel.select(timeout=left):
                continue
            try:
                ready = ws.wait(timeout=0)  # clears the descriptor; never blocks here
            except TimeoutError:
                continue
            for obj in ready:
                if obj is st:
                    s = st.read()
                    print(f"state v{st.version}: x={s.x} y={s.y}", flush=True)
                else:
                    while True:  # drain: the descriptor stays readable while messages wait
                        try:
                            print(f"command: {q.get(timeout=0).decode(errors='replace')}", flush=True)
                        except TimeoutError:
                            break
        sel.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
