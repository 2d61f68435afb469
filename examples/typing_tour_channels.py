"""Pipe, PipeServer and Semaphore, written as a type-checked program would use them.

    python examples/typing_tour_channels.py
    mypy --strict examples/typing_tour_channels.py
"""
from __future__ import annotations

import sys
import threading
import uuid

import sharedstate as ss


def pipes(name: str) -> list[bytes]:
    got: list[bytes] = []
    with ss.PipeServer(name) as server:
        assert server.max_message == ss.DEFAULT_MAX_MESSAGE

        def serve() -> None:
            with server.accept(timeout=10.0) as conn:
                request = conn.recv(timeout=10.0)
                conn.send(request.upper())
                buf = bytearray(64)
                n: int = conn.recv_into(buf, timeout=10.0)
                got.append(bytes(buf[:n]))

        t = threading.Thread(target=serve)
        t.start()
        with ss.Pipe.connect(name, timeout=10.0) as client:
            client.send(b"ping")
            got.append(client.recv(timeout=10.0))
            nxt: bytes | None = client.peek()
            size: int = client.available()
            assert nxt is None and size == 0
            client.send(memoryview(b"bye"))
        t.join()
    return got


def semaphores(name: str) -> bool:
    sem = ss.Semaphore.create(name, initial=0)
    try:
        sem.release(2)
        with ss.Semaphore.open(name) as other:
            ok: bool = other.acquire(timeout=1.0) and other.acquire(timeout=0)
            return ok and not other.acquire(timeout=0.01)
    finally:
        sem.unlink()
        sem.close()


def main() -> int:
    tag = uuid.uuid4().hex[:8]
    print("pipe:", pipes(f"sst-tour-pipe-{tag}"), "semaphore:", semaphores(f"sst-tour-sem-{tag}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
