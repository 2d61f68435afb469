"""Child processes for the cross-process SharedState tests: python state_child.py MODE NAME ..."""
import os
import sys
import time

import sharedstate as ss

BIG = ss.Layout([("tag", "<u4"), ("fill", "<u4", (16383,))])  # 64 KiB: writes take long enough to be hit


def controller_value(i):
    return dict(x=i, y=i, is_open=bool(i & 1), is_running=not (i & 1), is_pressing=(i % 3 == 0))


def main():
    mode, name = sys.argv[1], sys.argv[2]
    if mode == "writer":  # full speed, every field derived from i
        seconds = float(sys.argv[3])
        st = ss.SharedState.open(name)
        print("ready", flush=True)
        end = time.monotonic() + seconds
        i = 0
        while True:
            i += 1
            st.write(**controller_value(i))
            if (i & 255) == 0 and time.monotonic() > end:
                break
        print(i, flush=True)
    elif mode == "bigwriter":  # whole-payload writes of one repeated byte, forever
        st = ss.SharedState.open(name)
        payloads = [bytes([k]) * BIG.size for k in range(256)]
        print("ready", flush=True)
        i = 0
        while True:
            i += 1
            st.write(payloads[i & 255])
    elif mode == "waiter":
        since, timeout = int(sys.argv[3]), float(sys.argv[4])
        st = ss.SharedState.open(name)
        print("waiting", flush=True)
        try:
            v = st.wait(since=since, timeout=timeout)
            print("woke", v, st.x, flush=True)
        except TimeoutError as e:
            print("timeout", e, flush=True)
    elif mode == "wait_forever":
        st = ss.SharedState.open(name)
        print("waiting", flush=True)
        st.wait(timeout=None)
    elif mode == "creator":  # create, write, then hold it until killed or stdin closes
        st = ss.SharedState.create(name, ss.CONTROLLER)
        st.write(x=77)
        print("ready", flush=True)
        sys.stdin.read()
        if len(sys.argv) > 3 and sys.argv[3] == "exit_without_close":
            os._exit(0)
        st.close()
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
