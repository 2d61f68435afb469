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


def publisher(name: str, count: int) -> subprocess.Popen:
    """A child that publishes frame i + 1 (every pixel i + 1) each time it reads a line: one
    frame per next_frame(p), so a slow test never finds two where it waits for one."""
    code = textwrap.dedent(f"""
        import sys, numpy as np, sharedstate as ss
        fr = ss.Frames.open({name!r})
        print("ready", flush=True)
        for i in range({count}):
            sys.stdin.readline()
            fr.publish(np.full((64, 64), i + 1, np.uint8))
        fr.close()
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    # The child's start-up (an interpreter, numpy, the extension) is not what these tests time:
    # under Wine on a loaded machine it has taken longer than the 10 s a wait below allows.
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return p


def next_frame(p: subprocess.Popen) -> None:
    assert p.stdin is not None
    p.stdin.write("go\n")
    p.stdin.flush()


def test_waitset_reports_frames_and_states_in_the_order_added(unique_name):
    with ss.Frames.create(unique_name + "-f", (64, 64), np.uint8) as fr, \
            ss.SharedState.create(unique_name + "-s", ss.CONTROLLER) as st:
        ws = ss.WaitSet()
        ws.add(st)
        ws.add(fr)
        with pytest.raises(TimeoutError):
            ws.wait(timeout=0)
        p = publisher(fr.name, 3)
        try:
            seen = 0
            while seen < 3:
                next_frame(p)
                ready = ws.wait(timeout=10)
                assert ready == [fr], ready  # the state never changed: only the frames member
                v = fr.version
                assert v == seen + 1  # each frame reported once, none skipped
                with fr.latest() as a:
                    assert int(a[0, 0]) == v and (a == v).all()
                del a
                seen = v
            st.write(x=1)
            fr.publish(np.full((64, 64), 9, np.uint8))
            assert ws.wait(timeout=5) == [st, fr]  # both ready: in the order added
            ws.remove(fr)
            with pytest.raises(TimeoutError):
                ws.wait(timeout=0)
        finally:
            p.stdin.close()  # a failed test: the child publishes what is left and ends
            p.wait(30)


def test_frames_wait_async(unique_name):
    with ss.Frames.create(unique_name, (64, 64), np.uint8) as fr:
        p = publisher(fr.name, 2)

        async def main() -> list:
            got = []
            v = 0
            while len(got) < 2:
                next_frame(p)
                v = await fr.wait_async(since=v, timeout=10)
                got.append(v)
            with pytest.raises(TimeoutError):
                await fr.wait_async(timeout=0.05)
            return got

        try:
            got = asyncio.run(main())
        finally:
            p.stdin.close()  # a failed test: the child publishes what is left and ends
            p.wait(30)
        assert got == [1, 2]
