"""Child processes for the WaitSet / asyncio tests: python waitset_child.py MODE ..."""
import sys
import time

import sharedstate as ss


def main():
    mode = sys.argv[1]
    if mode == "write-and-put":  # GO STATE QUEUE: after each go, one write and one message
        go = ss.Semaphore.open(sys.argv[2])
        st = ss.SharedState.open(sys.argv[3])
        q = ss.Queue.open(sys.argv[4])
        rounds = int(sys.argv[5])
        print("ready", flush=True)
        for i in range(rounds):
            if not go.acquire(timeout=60):  # the first: until its siblings started too (slow under Wine)
                sys.exit(2)
            st.write(x=i + 1)
            q.put(b"%d" % (i + 1))
    elif mode == "write-then-hang":  # STATE: one write, then wait to be killed
        st = ss.SharedState.open(sys.argv[2])
        st.write(x=1)
        print("wrote", flush=True)
        time.sleep(60)
    elif mode == "wait-forever":  # STATE: ws.wait() until Ctrl-C
        st = ss.SharedState.open(sys.argv[2])
        ws = ss.WaitSet()
        ws.add(st)
        try:
            print("waiting", flush=True)
            ws.wait()
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(3)
        sys.exit(1)
    elif mode == "put-many":  # QUEUE N PAUSE_EVERY: N messages b"0".."N-1", a short nap now and then
        q = ss.Queue.open(sys.argv[2])
        n = int(sys.argv[3])
        print("ready", flush=True)
        for i in range(n):
            q.put(b"%d" % i, timeout=20)
            if i % 10 == 9:
                time.sleep(0.002)
    elif mode == "writer-loop":  # STATE N: N writes, each after the parent saw the last (y == x)
        st = ss.SharedState.open(sys.argv[2])
        n = int(sys.argv[3])
        print("ready", flush=True)
        for i in range(1, n + 1):
            st.write(x=i)
            end = time.monotonic() + 20
            while st.read().y != i:
                if time.monotonic() > end:
                    sys.exit(2)
                time.sleep(0.0005)
    elif mode == "die-mid-put":  # QUEUE: reserve a record, never publish it, wait to be killed
        q = ss.Queue.open(sys.argv[2])
        with q.put_view(8) as mv:
            mv[:] = b"never!!!"
            print("holding", flush=True)
            time.sleep(60)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
