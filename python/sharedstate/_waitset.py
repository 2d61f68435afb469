"""WaitSet: wait on many objects at once.

    ws = ss.WaitSet()
    ws.add(st); ws.add(q); ws.add(conn)      # SharedState, Queue, Mailslot, Pipe, PipeServer, Semaphore
    for obj in ws.wait(timeout=1.0):         # the ready members, in the order added; TimeoutError
        ...
    ws.remove(q)
    ws.fileno()                              # Linux: readable while a member is ready (selectors, Qt)
    ws.handle                                # Windows: a waitable event (QWinEventNotifier)

A SharedState member is ready when its version passes the one the set last reported (or
`since`, given per object to add()); a Queue or Mailslot while a message is available; a Pipe
when a message (or the peer's end) is there; a PipeServer when a client waits; a Semaphore
while its count is positive (readiness only: acquire it yourself). The waiting is compiled
(sharedstate/waitset.hpp): one kernel wait for the whole set, GIL released, Ctrl-C works.
"""
from ._core import WaitSet

__all__ = ["WaitSet"]
