"""An asyncio program that reacts to whichever comes first: the controller state or a command.

    python aio_reader.py ControllerMemory Commands [--seconds S]

Opens (or creates) the controller state and the command queue, then runs two coroutines on one
event loop: one prints every controller update (``await st.wait_async()``), the other every
command (``await q.get_async()``). However many coroutines wait, the loop costs no extra Python
thread on Linux (it watches one WaitSet descriptor) and one elsewhere.
With --demo it also writes a few updates and commands itself, so it runs alone.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib

import sharedstate as ss


async def watch_state(st: ss.SharedState) -> None:
    v = st.version
    while True:
        v = await st.wait_async(since=v)
        s = st.read()
        print(f"state v{v}: x={s.x} y={s.y} running={s.is_running}", flush=True)


async def watch_commands(q: ss.Queue) -> None:
    while True:
        cmd = await q.get_async()
        print(f"command: {cmd.decode(errors='replace')}", flush=True)


async def demo(st: ss.SharedState, q: ss.Queue) -> None:
    for i in range(3):
        await asyncio.sleep(0.05)
        st.write(x=i, y=2 * i, is_running=True)
        q.put(b"jump %d" % i)


async def main_async(args: argparse.Namespace) -> None:
    st = ss.SharedState.create(args.state, ss.CONTROLLER, exist_ok=True)
    q = ss.Queue.create(args.queue, capacity=1 << 16, exist_ok=True)
    with st, q:
        tasks = [asyncio.ensure_future(watch_state(st)), asyncio.ensure_future(watch_commands(q))]
        if args.demo:
            await demo(st, q)
        await asyncio.sleep(args.seconds)
        for t in tasks:  # cancelling leaves both objects usable: nothing is consumed
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("state")
    ap.add_argument("queue")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--demo", action="store_true", help="write a few updates and commands ourselves")
    args = ap.parse_args(argv)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
