"""Read a legacy mapping that has no sharedstate header (an unmodified C++ program's
CreateFileMapping / shm_open struct, or multiprocessing.shared_memory).

    ./legacy_game ControllerMemory &
    python attach_legacy.py ControllerMemory

No seqlock is possible without the writer's cooperation: attach_raw re-reads until two
copies agree, which makes torn values rarer, NOT impossible. Switch the writer to
sharedstate (game_writer.cpp) to make them impossible.
"""
from __future__ import annotations

import argparse
import sys
import time

import sharedstate as ss


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("name")
    ap.add_argument("--reads", type=int, default=20000)
    ap.add_argument("--self-test", action="store_true",
                    help="make the legacy block with multiprocessing.shared_memory instead of a C++ program")
    args = ap.parse_args(argv)
    if args.self_test:
        return self_test(args.name)
    deadline = time.monotonic() + 5
    while True:
        try:
            st = ss.SharedState.attach_raw(args.name, ss.CONTROLLER)  # payload at offset 0
            break
        except FileNotFoundError:
            if time.monotonic() > deadline:
                print(f"attach_legacy: nothing named {args.name!r}", file=sys.stderr)
                return 1
            time.sleep(0.05)
    torn = 0
    with st:  # close() never removes a raw segment: it belongs to the legacy program
        for _ in range(args.reads):
            c = st.read()
            if c.x != -c.y:
                torn += 1
        print(f"last: x={c.x} y={c.y} running={c.is_running}")
        print(f"attach_legacy: {args.reads} reads, {torn} torn ({100.0 * torn / args.reads:.3f} %): "
              f"best effort without a header")
    return 0


def self_test(name: str) -> int:
    """The stdlib as the legacy writer: a bare 12-byte block, struct-packed like the C++ struct."""
    import struct
    from multiprocessing import shared_memory

    shm = shared_memory.SharedMemory(name=name, create=True, size=ss.CONTROLLER.size)
    try:
        struct.pack_into("<ii???x", shm.buf, 0, 200, 300, False, True, False)
        with ss.SharedState.attach_raw(name, ss.CONTROLLER) as st:
            c = st.read()
            st.write(is_pressing=True)  # raw writes land in place, visible to the stdlib side
        assert struct.unpack_from("<ii???x", shm.buf, 0)[4] is True
        print(f"self-test: x={c.x} y={c.y} running={c.is_running}")
    finally:
        shm.close()
        shm.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
