"""Pipe / PipeServer across real processes: boundaries, peek, many clients, dead peers,
restarts, errors, permissions, timeouts and Ctrl-C."""
from __future__ import annotations

import _thread
import os
import select
import signal
import socket
import stat
import sys
import tempfile
import threading
import time

import pytest

import _procctl
import sharedstate as ss

LINUX = sys.platform.startswith("linux")
SIZES = [0, 1, 4095, 4096, 65536, 1 << 20, 16 << 20]


child = _procctl.python_child  # returns once the child has started (its start-up is not timed)


def pattern(n: int, seed: int = 1) -> bytes:
    block = bytes((i * 31 + seed) & 0xFF for i in range(4096))
    return (block * (n // 4096 + 1))[:n]


ECHO = """
    import sys, sharedstate as ss
    c = ss.Pipe.connect(sys.argv[1], timeout=10)
    try:
        while True:
            c.send(c.recv(timeout=30))
    except EOFError:
        sys.exit(0)
"""


@pytest.fixture
def server(unique_name):
    srv = ss.PipeServer(unique_name)
    yield srv
    srv.close()


def test_boundaries_every_size(server, unique_name):
    p = child(ECHO, unique_name)
    with server.accept(timeout=10) as c:
        for n in SIZES:
            m = pattern(n, n & 0xFF)
            c.send(m, timeout=30)
            back = c.recv(timeout=30)
            assert len(back) == n and back == m, n
        # Several in flight at once (they fit the socket buffer): none runs into another.
        small = [n for n in SIZES if n <= 65536]
        for n in small:
            c.send(pattern(n, 7))
        assert [c.recv(timeout=10) for _ in small] == [pattern(n, 7) for n in small]
        # Any bytes-like object is a message.
        c.send(bytearray(b"abc"))
        c.send(memoryview(b"xyz-abc")[4:])
        assert c.recv(timeout=10) == b"abc" and c.recv(timeout=10) == b"abc"
    assert p.wait(timeout=10) == 0


def test_recv_into(server, unique_name):
    p = child(ECHO, unique_name)
    c = server.accept(timeout=10)
    c.send(b"12345")
    deadline = time.monotonic() + 10
    while c.available() == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert c.available() == 5
    small = bytearray(4)
    with pytest.raises(ValueError):
        c.recv_into(small)  # too small: stays the next message
    buf = bytearray(16)
    assert c.recv_into(buf, timeout=5) == 5 and bytes(buf[:5]) == b"12345"
    big = pattern(300000)
    c.send(big)
    out = bytearray(len(big))
    assert c.recv_into(memoryview(out), timeout=10) == len(big) and out == big
    c.close()
    assert p.wait(timeout=10) == 0


SENDER = """
    import sys, sharedstate as ss
    c = ss.Pipe.connect(sys.argv[1], timeout=10)
    c.send(b"first")
    c.send(bytes(range(256)) * 400)
    c.send(b"")
    sys.exit(0 if c.recv(timeout=30) == b"done" else 1)
"""


def wait_peek(c, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = c.peek()
        if m is not None:
            return m
        time.sleep(0.001)
    raise AssertionError("nothing arrived")


def test_peek_twice_consumes_nothing(server, unique_name):
    p = child(SENDER, unique_name)
    c = server.accept(timeout=10)
    assert wait_peek(c) == b"first"
    assert c.peek() == b"first"
    assert c.available() == 5
    assert c.recv(timeout=5) == b"first"
    big = bytes(range(256)) * 400  # 102400 bytes: more than one record on Linux
    assert wait_peek(c) == big and c.peek() == big
    assert c.available() == len(big)
    assert c.recv(timeout=5) == big
    assert wait_peek(c) == b""  # Windows: the armed read has it (PeekNamedPipe alone cannot see it)
    assert c.available() == 0
    assert c.recv(timeout=5) == b""
    assert c.peek() is None and c.available() == 0
    c.send(b"done")
    assert p.wait(timeout=10) == 0


# The server accepts and answers only once all four have started; on Windows one pipe instance
# listens at a time (a new one after each accept), so a client's connect and first reply wait
# for the other children's start-ups: seconds each under Wine on a loaded machine.
CLIENT = """
    import sys, sharedstate as ss
    c = ss.Pipe.connect(sys.argv[1], timeout=60)
    for i in range(50):
        msg = f"{sys.argv[2]}:{i}".encode()
        c.send(msg)
        assert c.recv(timeout=60) == b"ack " + msg
    c.close()
"""


def test_many_clients(server, unique_name):
    kids = [child(CLIENT, unique_name, str(k)) for k in range(4)]
    conns = [server.accept(timeout=10) for _ in kids]
    seen = {}
    live = list(conns)
    while live:
        r, _, _ = select.select(live, [], [], 10) if LINUX else (live, None, None)
        assert r, "no client spoke for 10 s"
        for c in r:
            try:
                m = c.recv(timeout=10)
            except EOFError:
                live.remove(c)
                c.close()
                continue
            who, i = m.decode().split(":")
            assert int(i) == seen.get(who, -1) + 1  # each client's order kept
            seen[who] = int(i)
            c.send(b"ack " + m)
    assert seen == {str(k): 49 for k in range(4)}
    assert [k.wait(timeout=10) for k in kids] == [0] * 4


HOLD = """
    import sys, time, sharedstate as ss
    c = ss.Pipe.connect(sys.argv[1], timeout=10)
    c.send(b"hi")
    time.sleep(60)
"""


def test_client_killed_mid_conversation(server, unique_name):
    p = child(HOLD, unique_name)
    c = server.accept(timeout=10)
    assert c.recv(timeout=10) == b"hi"
    p.kill()
    p.wait()
    t0 = time.monotonic()
    with pytest.raises((BrokenPipeError, EOFError)):
        c.recv(timeout=5)
    assert time.monotonic() - t0 < 4.0  # the peer's death ends the call, not its timeout
    with pytest.raises((BrokenPipeError, EOFError)):
        c.send(b"anyone?")
    c.close()


SERVER = """
    import sys, time, sharedstate as ss
    s = ss.PipeServer(sys.argv[1])
    c = s.accept(timeout=30)
    c.send(b"up")
    time.sleep(60)
"""


def test_server_restarted_after_crash(unique_name):
    p = child(SERVER, unique_name)
    c = ss.Pipe.connect(unique_name, timeout=10)
    assert c.recv(timeout=10) == b"up"
    p.send_signal(signal.SIGKILL) if LINUX else p.kill()
    p.wait()
    with pytest.raises((BrokenPipeError, EOFError)):
        c.recv(timeout=5)
    c.close()
    with pytest.raises(FileNotFoundError):  # its socket file is left, but nobody serves it
        ss.Pipe.connect(unique_name)
    with ss.PipeServer(unique_name) as srv:  # the stale socket is replaced
        e = child(ECHO, unique_name)
        with srv.accept(timeout=10) as d:
            d.send(b"again")
            assert d.recv(timeout=10) == b"again"
        assert e.wait(timeout=10) == 0
    with pytest.raises(FileNotFoundError):
        ss.Pipe.connect(unique_name)


def test_clean_close_is_eof_and_second_server_refused(server, unique_name):
    with pytest.raises(FileExistsError):
        ss.PipeServer(unique_name)
    cli = ss.Pipe.connect(unique_name, timeout=5)
    conn = server.accept(timeout=5)
    conn.send(b"last words")
    conn.close()
    assert cli.recv(timeout=5) == b"last words"
    with pytest.raises(EOFError):
        cli.recv(timeout=5)
    with pytest.raises(ValueError):
        conn.send(b"x")  # closed here
    assert conn.closed and not cli.closed
    cli.close()
    cli.close()  # idempotent


def test_connect_to_nobody(unique_name):
    with pytest.raises(FileNotFoundError):
        ss.Pipe.connect(unique_name)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        ss.Pipe.connect(unique_name, timeout=0.2)
    assert 0.15 < time.monotonic() - t0 < 2


def test_connect_waits_for_a_late_server(unique_name):
    p = child("""
        import sys, time, sharedstate as ss
        time.sleep(0.3)
        s = ss.PipeServer(sys.argv[1])
        s.accept(timeout=10).send(b"late")
        time.sleep(1)
    """, unique_name)
    c = ss.Pipe.connect(unique_name, timeout=10)
    assert c.recv(timeout=10) == b"late"
    c.close()
    p.wait(timeout=10)


@pytest.mark.parametrize("bad", ["", "a/b", "a\\b", "x" * 300, "nul\0byte"])
def test_bad_names(bad):
    with pytest.raises(ValueError):
        ss.PipeServer(bad)
    with pytest.raises(ValueError):
        ss.Pipe.connect(bad)


def test_max_message(unique_name):
    with ss.PipeServer(unique_name, max_message=1000) as srv:
        assert srv.max_message == 1000
        cli = ss.Pipe.connect(unique_name, timeout=5, max_message=1000)
        conn = srv.accept(timeout=5)
        assert conn.max_message == 1000
        with pytest.raises(ValueError):
            conn.send(b"x" * 1001)
        with pytest.raises(ValueError):
            cli.send(b"x" * 1001)
        assert cli.available() == 0  # nothing was sent
        conn.send(b"y" * 1000)
        assert cli.recv(timeout=5) == b"y" * 1000
        with pytest.raises(ValueError):
            ss.PipeServer(unique_name + "-2", max_message=-1)
        cli.close()
        conn.close()


def test_receiver_refuses_messages_over_its_max_message(unique_name):
    with ss.PipeServer(unique_name, max_message=1000) as srv:
        cli = ss.Pipe.connect(unique_name, timeout=5)  # default max_message: may send more
        conn = srv.accept(timeout=5)
        for size in (5000, 200000):  # one record, several records (Linux)
            cli.send(b"z" * size)
            cli.send(b"ok")
            with pytest.raises(ValueError):
                conn.recv(timeout=5)  # discarded whole ...
            assert conn.recv(timeout=5) == b"ok"  # ... and the stream is still in step
        cli.close()
        conn.close()


def test_timeouts(server, unique_name):
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        server.accept(timeout=0.1)
    assert 0.08 < time.monotonic() - t0 < 2
    cli = ss.Pipe.connect(unique_name, timeout=5)
    conn = server.accept(timeout=5)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        cli.recv(timeout=0.1)
    assert 0.08 < time.monotonic() - t0 < 2
    with pytest.raises(TimeoutError):
        cli.recv(timeout=0)
    with pytest.raises(ValueError):
        cli.recv(timeout=-1)
    conn.send(b"after")
    assert cli.recv(timeout=5) == b"after"  # a timeout did not break the pipe
    cli.close()
    conn.close()


def test_ctrl_c_interrupts_blocking_calls(server, unique_name):
    cli = ss.Pipe.connect(unique_name, timeout=5)
    conn = server.accept(timeout=5)
    for call in (cli.recv, lambda: server.accept()):
        timer = threading.Timer(0.2, _thread.interrupt_main)
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            call()
        assert time.monotonic() - t0 < 2
        timer.join()
    conn.send(b"still fine")
    assert cli.recv(timeout=5) == b"still fine"
    cli.close()
    conn.close()


def test_close_from_another_thread_wakes_recv(server, unique_name):
    cli = ss.Pipe.connect(unique_name, timeout=5)
    conn = server.accept(timeout=5)
    errors = []

    def reader():
        try:
            cli.recv()
        except Exception as e:  # noqa: BLE001 - what it raises is the point
            errors.append(e)

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    cli.close()
    t.join(5)
    assert not t.is_alive() and time.monotonic() - t0 < 2
    assert isinstance(errors[0], (ValueError, EOFError))
    conn.close()


@pytest.mark.skipif(not LINUX, reason="descriptors and socket files are Linux")
def test_fileno_and_socket_directory(server, unique_name):
    cli = ss.Pipe.connect(unique_name, timeout=5)
    conn = server.accept(timeout=5)
    assert select.select([cli.fileno()], [], [], 0)[0] == []
    conn.send(b"ping")
    assert select.select([cli.fileno()], [], [], 5)[0] == [cli.fileno()]
    assert cli.recv() == b"ping"
    d = os.path.dirname(server.path)
    st = os.lstat(d)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()
    assert stat.S_ISSOCK(os.lstat(server.path).st_mode)
    assert stat.S_IMODE(os.lstat(server.path).st_mode) == 0o600
    cli.close()
    conn.close()
    path = server.path
    server.close()
    assert not os.path.exists(path)  # a closed server leaves nothing behind


def _as_other_user(fn) -> int:
    """Runs fn() in a forked child as uid/gid 65534; returns its exit status."""
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            code = fn()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.skipif(not LINUX or os.geteuid() != 0, reason="needs root to become another uid")
def test_another_uid_is_refused_by_the_directory(server):
    path = server.path

    def connect():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            s.connect(path)
        except PermissionError:
            return 0  # refused: the 0700 directory keeps other users out
        except OSError:
            return 2
        return 1

    assert _as_other_user(connect) == 0
    with pytest.raises(TimeoutError):
        server.accept(timeout=0.2)  # nobody got in


@pytest.mark.skipif(not LINUX or os.geteuid() != 0, reason="needs root to become another uid")
def test_another_uid_is_refused_by_peer_credentials(unique_name, monkeypatch):
    # Even if the directory were opened up, SO_PEERCRED keeps another uid out.
    runtime = tempfile.mkdtemp(prefix="sst-xdg-")
    os.chmod(runtime, 0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", runtime)
    srv = ss.PipeServer(unique_name)
    try:
        path = srv.path
        assert path.startswith(runtime + "/sharedstate/")
        os.chmod(runtime, 0o755)
        os.chmod(os.path.dirname(path), 0o755)
        os.chmod(path, 0o666)
        r, w = os.pipe()

        def connect():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.connect(path)  # the kernel lets it in now
            os.write(w, b"c")
            s.settimeout(10)
            try:
                data = s.recv(100)
            except ConnectionResetError:
                data = b""
            return 0 if data == b"" else 1  # the server hung up on us

        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                code = connect()
            finally:
                os._exit(code)
        assert os.read(r, 1) == b"c"
        with pytest.raises(TimeoutError):
            srv.accept(timeout=0.3)  # the connection came and was refused
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        os.close(r)
        os.close(w)
        os.chmod(os.path.dirname(path), 0o700)
        os.chmod(runtime, 0o700)
        # And our own library refuses a loosened directory outright.
        os.chmod(os.path.dirname(path), 0o755)
        with pytest.raises(PermissionError):
            ss.Pipe.connect(unique_name)
        os.chmod(os.path.dirname(path), 0o700)
    finally:
        srv.close()
        os.chmod(runtime, 0o700)
        for d, _, files in os.walk(runtime, topdown=False):
            for f in files:
                os.unlink(os.path.join(d, f))
            os.rmdir(d)


@pytest.mark.skipif(not LINUX, reason="XDG_RUNTIME_DIR is Linux")
def test_client_with_xdg_runtime_dir_finds_a_server_without(unique_name, monkeypatch):
    runtime = tempfile.mkdtemp(prefix="sst-xdg-")
    try:
        monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
        with ss.PipeServer(unique_name) as srv:  # in /tmp/sharedstate-<uid>
            assert srv.path.startswith(f"/tmp/sharedstate-{os.geteuid()}/")
            monkeypatch.setenv("XDG_RUNTIME_DIR", runtime)
            with ss.Pipe.connect(unique_name, timeout=5) as cli, srv.accept(timeout=5) as conn:
                cli.send(b"found")
                assert conn.recv(timeout=5) == b"found"
            with ss.PipeServer(unique_name + "-x") as other:  # a server with XDG lives there
                assert other.path.startswith(runtime + "/sharedstate/")
    finally:
        for d, _, files in os.walk(runtime, topdown=False):
            for f in files:
                os.unlink(os.path.join(d, f))
            os.rmdir(d)
