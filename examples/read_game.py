"""Read the game's controller state live: every update, consistent, without polling.

    ./game_writer ControllerMemory &
    python read_game.py ControllerMemory [--count N]
"""
from __future__ import annotations

import argparse
import sys
import time

import sharedstate as ss


def open_when_ready(name: str, within: float) -> ss.SharedState:
    """The game may start after us: retry for a while."""
    deadline = time.monotonic() + within
    while True:
        try:
            return ss.SharedState.open(name, ss.CONTROLLER)  # the layout must match the game's
        except FileNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("name")
    ap.add_argument("--count", type=int, default=0, help="stop after N updates (default: until the game stops)")
    ap.add_argument("--wait-for-game", type=float, default=5.0, metavar="SECONDS")
    args = ap.parse_args(argv)
    try:
        st = open_when_ready(args.name, args.wait_for_game)
    except FileNotFoundError:
        print(f"read_game: no game is publishing {args.name!r}", file=sys.stderr)
        return 1
    seen = 0
    with st:
        v = st.version
        while True:
            try:
                v = st.wait(since=v, timeout=2.0)  # GIL released; Ctrl-C works
            except TimeoutError:
                print("read_game: no update for 2 s; is the game stopped?", file=sys.stderr)
                return 1
            c = st.read()  # one consistent snapshot
            seen += 1
            print(f"version {v:5d}  x={c.x:4d} y={c.y:4d}  running={c.is_running} pressing={c.is_pressing}", flush=True)
            if not c.is_running or (args.count and seen >= args.count):
                break
    print(f"read_game: {seen} updates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
