"""Frames as a WaitSet member and under asyncio: a frame published in another process wakes
the set (once per change) and `await fr.wait_async()`, like a SharedState."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import sharedstate as ss


def publisher(name: str, count: int, gap: float) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import sys, time, numpy as np, sharedstate as ss
        fr = ss.Frames.open({name!r})
        print("ready", flush=True)
        sys.stdin.readline()
        for i in range({count}):
            fr.publish(np.full((64, 64), i + 1, np.uint8))
            time.sleep({gap})
        fr.close()
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    # The child's start-up (an interpreter, numpy, the extension) is not what these tests time:
    # under Wine on a loaded machine it has taken longer than the 10 s a wait below allows.
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return p


def test_waitset_reports_frames_and_states_in_the_order_added(unique_name):
    with ss.Frames.create(unique_name + "-f", (64, 64), np.uint8) as fr, \
            ss.SharedState.create(unique_name + "-s", ss.CONTROLLER) as st:
        ws = ss.WaitSet()
        ws.add(st)
        ws.add(fr)
        with pytest.raises(TimeoutError):
            ws.wait(timeout=0)
        p = publisher(fr.name, 3, 0.2)
        try:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
            seen = 0
            while seen < 3:
                ready = ws.wait(timeout=10)
                assert ready == [fr], ready  # the state never changed: only the frames member
                # The set reports each change once, but the publisher may have published again
                # since (a stalled test): the frame read here can be the one already seen.
                cm = fr.latest()
                with cm as a:
                    v = cm.version
                    assert v >= seen and int(a[0, 0]) == v and (a == v).all()
                del a
                seen = v
            st.write(x=1)
            fr.publish(np.full((64, 64), 9, np.uint8))
            assert ws.wait(timeout=5) == [st, fr]  # both ready: in the order added
            ws.remove(fr)
            with pytest.raises(TimeoutError):
                ws.wait(timeout=0)
        finally:
            p.wait(30)


def test_frames_wait_async(unique_name):
    with ss.Frames.create(unique_name, (64, 64), np.uint8) as fr:
        p = publisher(fr.name, 2, 0.3)

        async def main() -> list:
            got = []
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
            v = 0
            while v < 2:  # two wakes, or one (a slow wake may find both frames published)
                v = await fr.wait_async(since=v, timeout=10)
                got.append(v)
            with pytest.raises(TimeoutError):
                await fr.wait_async(timeout=0.05)
            return got

        try:
            got = asyncio.run(main())
        finally:
            p.wait(30)
        assert got[-1] == 2 and got == sorted(got)
