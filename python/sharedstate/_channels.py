"""Message pipes and named semaphores.

    srv = ss.PipeServer("game-events")            # listens; any number of clients
    conn = srv.accept(timeout=5)                   # -> Pipe, one per client
    cli = ss.Pipe.connect("game-events")           # in the other process
    cli.send(b"hello"); conn.recv() == b"hello"    # one send is one recv, 0 B .. max_message
    conn.peek(); conn.available()                  # look without consuming

    sem = ss.Semaphore.create("frame-ready", initial=0)
    sem.release(); ss.Semaphore.open("frame-ready").acquire(timeout=0.1) -> bool

The classes are compiled (sharedstate._core): Pipe.send/recv/recv_into are the hot path of
every round trip and go through CPython's calling convention directly. Design notes, the
wire format on Linux and the lifetime rules: docs/channels.md.
"""
from ._core import DEFAULT_MAX_MESSAGE, Pipe, PipeServer, Semaphore

__all__ = ["DEFAULT_MAX_MESSAGE", "Pipe", "PipeServer", "Semaphore"]
