"""Queue, Mailslot and MailslotWriter, written as a type-checked program would use them.

    python examples/typing_tour_queue.py
    mypy --strict examples/typing_tour_queue.py
"""
from __future__ import annotations

import sys
import uuid

import sharedstate as ss


def queue(name: str) -> list[bytes]:
    got: list[bytes] = []
    with ss.Queue.create(name, capacity=1 << 12) as q, ss.Queue.open(name) as consumer:
        q.put(b"first", timeout=1.0)
        q.put(memoryview(b"second"))
        with q.put_view(5) as slot:
            slot[:] = b"third"
        assert len(consumer) == 3 and not consumer.empty()
        got.append(consumer.get(timeout=1.0))
        buf = bytearray(16)
        n: int = consumer.get_into(buf, timeout=1.0)
        got.append(bytes(buf[:n]))
        with consumer.get_view(timeout=1.0) as view:
            got.append(view.tobytes())
        info = q.info()
        assert info["count"] == 0 and q.capacity == 1 << 12 and q.max_message > 0 and q.name == name
        try:
            consumer.get(timeout=0.01)
        except TimeoutError:
            pass
    return got


def mailslot(name: str) -> tuple[bytes, tuple[int | None, int | None]]:
    with ss.Mailslot(name) as box, ss.MailslotWriter(name) as writer:
        writer.send(b"hello")
        info = box.info()
        return box.recv(timeout=1.0), info


def main() -> int:
    tag = uuid.uuid4().hex[:8]
    print("queue:", queue(f"sst-tour-q-{tag}"), "mailslot:", mailslot(f"sst-tour-box-{tag}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
