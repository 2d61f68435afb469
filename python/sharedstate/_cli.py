"""The command line: python -m sharedstate {demo,cleanup} ..."""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from . import _core


def cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run
    return run(seconds=args.seconds, rate=args.rate, name=args.name)


def cmd_cleanup(args: argparse.Namespace) -> int:
    """Remove sharedstate segments whose holders have all exited (Linux; Windows does it itself)."""
    if sys.platform == "win32":
        print("cleanup: nothing to do on Windows (a segment goes with its last handle)")
        return 0
    removed = 0
    for entry in sorted(os.listdir("/dev/shm")):
        if entry.startswith("sem."):
            continue
        try:
            if _core.state_remove_if_stale(entry):
                removed += 1
                print(f"removed {entry}")
        except (OSError, ValueError):
            continue
    print(f"cleanup: {removed} stale segment(s) removed")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sharedstate", description="sharedstate: shared state and messages between C++ and Python")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the C++ game-side simulator and read it live from Python")
    d.add_argument("--seconds", type=float, default=3.0)
    d.add_argument("--rate", type=float, default=1000.0, help="simulator writes per second")
    d.add_argument("--name", default=None, help="segment name (default: a unique one)")
    d.set_defaults(func=cmd_demo)
    c = sub.add_parser("cleanup", help="remove segments whose holders have all exited")
    c.set_defaults(func=cmd_cleanup)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
