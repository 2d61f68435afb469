"""Property test: whatever records a (same-user, hostile or broken) client sends to a
PipeServer, the server only ever returns whole messages or raises a clear exception.

The Linux pipe framing (docs/channels.md) is 'M' + body, 'F' + u64 total + piece, 'C' +
piece, 'E'. Hypothesis sends raw SOCK_SEQPACKET records mixing valid and invalid ones
(unknown tags, lengths that lie, pieces without a start, zero-byte records) straight to the
server's socket. The server runs in a CHILD process, so a crash is a negative return code.

Budget: SST_FUZZ_EXAMPLES // 4 (default 250).
"""
from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import textwrap

import pytest

import sharedstate as ss  # noqa: F401  (the child imports it; fail early here if it is broken)

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="raw SOCK_SEQPACKET records")

EXAMPLES = max(int(os.environ.get("SST_FUZZ_EXAMPLES", "1000")) // 4, 20)
MAX = 1 << 16  # the server's max_message: bounds what a lying 'F' can make it allocate
ALLOWED = {"BrokenPipeError", "EOFError", "TimeoutError", "ValueError", "ConnectionResetError", "OSError"}

SERVER = textwrap.dedent(r"""
    import json, sys
    import sharedstate as ss
    srv = ss.PipeServer(sys.argv[1], max_message=int(sys.argv[2]))
    print(json.dumps({"path": srv.path}), flush=True)
    for line in sys.stdin:  # one line per client the parent is about to connect
        conn = srv.accept(timeout=20)
        sizes, end = [], None
        try:
            for _ in range(50):
                m = conn.recv(timeout=2)
                assert isinstance(m, bytes)
                sizes.append(len(m))
            end = "too many"
        except Exception as e:  # noqa: BLE001 - classified by the parent
            end = {"type": type(e).__name__, "mro": [c.__name__ for c in type(e).__mro__], "msg": str(e)[:200]}
        conn.close()
        print(json.dumps({"sizes": sizes, "end": end}), flush=True)
""")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    name = f"sst-fuzzpipe-{os.getpid()}"
    p = subprocess.Popen([sys.executable, "-c", SERVER, name, str(MAX)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, bufsize=1)
    path = json.loads(p.stdout.readline())["path"]
    yield p, path
    p.stdin.close()
    p.wait(timeout=20)


def _u64(n: int) -> bytes:
    return struct.pack("<Q", n % 2**64)


record = st.one_of(
    st.binary(max_size=300).map(lambda b: b"M" + b),
    st.tuples(st.one_of(st.sampled_from([0, 1, 10, MAX, MAX + 1, 2**40, 2**40 + 1, 2**63, 2**64 - 1]),
                        st.integers(0, 4 * MAX)),
              st.binary(max_size=300)).map(lambda t: b"F" + _u64(t[0]) + t[1]),
    st.binary(max_size=300).map(lambda b: b"C" + b),
    st.just(b"E"),
    st.binary(max_size=40),  # unknown tags, short 'F' headers, empty records
)

COUNTS = {"clients": 0, "messages": 0, "ends": {}}


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(records=st.lists(record, min_size=0, max_size=8), say_goodbye=st.booleans())
def test_hostile_pipe_records_never_crash_the_server(server, records, say_goodbye):
    p, path = server
    p.stdin.write("next\n")
    p.stdin.flush()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        s.connect(path)
        for r in records:
            try:
                s.send(r)
            except OSError:  # the server may have given up on us already
                break
        if say_goodbye:
            try:
                s.send(b"E")
            except OSError:
                pass
    finally:
        s.close()
    line = p.stdout.readline()
    if not line:
        pytest.fail(f"the pipe server CRASHED (return code {p.wait()}) on records {records!r}")
    res = json.loads(line)
    assert all(0 <= n <= MAX for n in res["sizes"]), res
    end = res["end"]
    assert end != "too many", res
    assert end["type"] in ALLOWED or "OSError" in end["mro"] or "ValueError" in end["mro"], res
    assert end["type"] != "TimeoutError" or not say_goodbye or records == [], f"hung after a goodbye: {res}"
    COUNTS["clients"] += 1
    COUNTS["messages"] += len(res["sizes"])
    COUNTS["ends"][end["type"]] = COUNTS["ends"].get(end["type"], 0) + 1


def test_pipe_fuzz_summary(server):
    """The server is still alive and serving after every hostile client."""
    p, path = server
    assert p.poll() is None
    print(f"\npipe fuzz: {COUNTS['clients']} hostile clients, {COUNTS['messages']} whole messages, "
          f"ends {COUNTS['ends']}, 0 crashes")
