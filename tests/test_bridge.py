"""The Zenoh bridge: two processes on loopback, each with its own Zenoh session (peer mode,
explicit endpoints, no scouting); faults (killed exporter, killed game, restarted importer);
and two "hosts" in network namespaces joined by a veth pair whose link is cut mid-stream."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Iterator, List, Optional

import numpy as np
import pytest

import sharedstate as ss
from _procctl import until

zenoh = pytest.importorskip("zenoh", reason="the bridge extra (eclipse-zenoh) is not installed")

LINUX = sys.platform.startswith("linux")
pytestmark = pytest.mark.timeout(240)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bridge_cmd(*args: str) -> List[str]:
    return [sys.executable, "-m", "sharedstate", "bridge", *args]


def start(cmd: List[str], prefix: Optional[List[str]] = None) -> subprocess.Popen:
    p = subprocess.Popen((prefix or []) + cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return p


def wait_line(p: subprocess.Popen, word: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    assert p.stdout is not None
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if word in line:
            return line
        if not line and p.poll() is not None:
            err = p.stderr.read() if p.stderr else ""
            raise AssertionError(f"{p.args} exited {p.returncode}: {err}")
    raise AssertionError(f"{p.args}: no line with {word!r} within {timeout} s")


def stop(*procs: subprocess.Popen) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def open_when_there(name: str, timeout: float = 30.0) -> ss.SharedState:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return ss.SharedState.open(name)
        except FileNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def simulator(name: str, seconds: float, rate: float) -> subprocess.Popen:
    from sharedstate._demo import simulator_path
    exe = simulator_path()
    if not Path(exe).exists():
        pytest.skip(f"the C++ simulator is not built ({exe})")
    p = subprocess.Popen([str(exe), name, str(seconds), str(rate)], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and "ready" in p.stdout.readline()
    return p


@pytest.fixture
def sessions() -> Iterator[tuple]:
    """Two Zenoh sessions of this process, the second connected to the first on loopback."""
    port = free_port()
    a = ss.bridge.session(listen=[f"tcp/127.0.0.1:{port}"])
    b = ss.bridge.session(listen=[], connect=[f"tcp/127.0.0.1:{port}"])
    try:
        yield a, b
    finally:
        a.close()
        b.close()


# ---------------------------------------------------------------------------- basics
def test_without_zenoh_the_error_names_the_extra():
    code = textwrap.dedent("""
        import sys
        sys.modules["zenoh"] = None
        import sharedstate as ss
        try:
            ss.bridge.session()
        except ImportError as e:
            print("IMPORTERROR", e)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "IMPORTERROR" in out and "sharedstate[zenoh]" in out


def test_default_key_and_safe_defaults():
    assert ss.bridge.default_key("ControllerMemory") == f"sharedstate/{socket.gethostname()}/ControllerMemory" or \
        ss.bridge.default_key("ControllerMemory").endswith("/ControllerMemory")
    c = ss.bridge.make_config()
    s = str(c)
    assert "127.0.0.1" in s  # listens on loopback only unless told
    assert '"multicast"' not in s or "false" in s


def zenoh_files() -> set:
    """The segments Zenoh's shared memory leaves in /dev/shm (Linux)."""
    return {e for e in os.listdir("/dev/shm") if e.endswith(".zenoh")}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/dev/shm is Linux's")
def test_bridge_sessions_leave_nothing_in_dev_shm():
    """Zenoh's shared-memory transport (off by default in the bridge) leaves a segment per
    process in /dev/shm; with it off, a session that sent a big sample leaves nothing."""
    code = textwrap.dedent("""
        import sys, sharedstate as ss
        s = ss.bridge.session(shared_memory=(sys.argv[1] == "on") or None)
        p = s.declare_publisher("sst/test/shm")
        p.put(bytes(1 << 16))
        s.close()
    """)
    before = zenoh_files()
    subprocess.run([sys.executable, "-c", code, "default"], check=True, timeout=60)
    assert zenoh_files() <= before, "the bridge's default session left a Zenoh segment in /dev/shm"
    # The control: the same with Zenoh's shared memory on does leave one (its owner is gone,
    # so removing it here is safe; Zenoh would remove it at the next start).
    subprocess.run([sys.executable, "-c", code, "on"], check=True, timeout=60)
    left = zenoh_files() - before
    for e in left:
        os.unlink(os.path.join("/dev/shm", e))
    assert left, "control: with shared_memory=True Zenoh should have made its segment"
    assert ss.bridge.make_config().get_json("transport/shared_memory/enabled") == "false"
    assert ss.bridge.make_config(shared_memory=True).get_json("transport/shared_memory/enabled") == "true"


def test_state_in_process(unique_name, sessions):
    """Both ends in one process, two sessions: values, versions, source info, liveliness."""
    src, mirror = unique_name + "-src", unique_name + "-mir"
    key = "sstest/" + uuid.uuid4().hex
    a, b = sessions
    with ss.SharedState.create(src, ss.CONTROLLER) as st:
        st.write(x=1, y=1)
        ex = ss.bridge.export_state(src, key, a)
        im = ss.bridge.import_state(key, mirror, b)
        with ss.SharedState.open(mirror) as m:
            until(lambda: m.read().x == 1, 10, "first value mirrored")
            until(lambda: m.info()["source"]["alive"], 10, "source alive")
            info = m.info()["source"]
            assert info["key"] == key
            for i in range(2, 200):
                st.write(x=i, y=i)
            until(lambda: m.read().x == 199, 10, "last value mirrored")
            assert m.read().y == 199
            v = m.version
            ex.close()  # the exporter goes: the token is withdrawn
            until(lambda: not m.info()["source"]["alive"], 5, "source reported gone")
            assert m.version > v  # the change woke waiters: the version moved
        im.close()


def test_direct_write_and_on_update_answer_without_a_thread(unique_name, sessions):
    """export.write() writes the local state and sends from the caller's thread; an import's
    on_update(mirror) runs once each value is in the mirror, and may answer through another
    export's write(): a round trip that wakes no thread of the bridge. An exception in
    on_update is kept in the import's ``error`` and the link goes on."""
    import threading
    key_ask, key_reply = "sstest/" + uuid.uuid4().hex, "sstest/" + uuid.uuid4().hex
    a, b = sessions
    threads: list = []
    with ss.SharedState.create(unique_name + "-ask", ss.CONTROLLER) as ask, \
            ss.SharedState.create(unique_name + "-reply", ss.CONTROLLER):
        ex_ask = ss.bridge.export_state(unique_name + "-ask", key_ask, a)
        ex_reply = ss.bridge.export_state(unique_name + "-reply", key_reply, b)

        def answer(m):
            threads.append(threading.current_thread().name)
            snap = m.read()
            if snap.y < 0:
                raise RuntimeError("a bad value")
            ex_reply.write(x=snap.x, y=snap.y * 2)

        im_ask = ss.bridge.import_state(key_ask, unique_name + "-askm", b, on_update=answer)
        im_reply = ss.bridge.import_state(key_reply, unique_name + "-replym", a)
        try:
            with ss.SharedState.open(unique_name + "-replym") as m:
                for i in range(1, 50):
                    v = ex_ask.write(x=i, y=i)
                    assert v == ask.version and ask.read().x == i  # the local state has it too
                    until(lambda: m.read().x == i, 10, f"answer {i}")
                    assert m.read().y == 2 * i
                assert threads and threading.main_thread().name not in threads
                assert im_ask.error is None
                ex_ask.write(x=99, y=-1)  # on_update raises: kept, the link goes on
                until(lambda: im_ask.error is not None, 10, "the callback's error kept")
                assert isinstance(im_ask.error, RuntimeError)
                ex_ask.write(x=100, y=5)
                until(lambda: m.read().x == 100 and m.read().y == 10, 10, "answers after the error")
                # a write from elsewhere (not through the export) still goes out, within poll
                ask.write(x=7, y=7)
                until(lambda: m.read().x == 7, 10, "another writer's value sent by the bridge's thread")
        finally:
            im_reply.close()
            im_ask.close()
            ex_reply.close()
            ex_ask.close()


def test_with_bytearray_borrows_and_then_empties(unique_name):
    """_core._with_bytearray: the bytearray sees src's bytes without a copy, cannot be resized
    meanwhile, and is empty after the call (a reference kept reaches nothing)."""
    from sharedstate import _core
    with ss.Frames.create(unique_name, (4096,), np.uint8) as fr:
        fr.publish(np.arange(4096, dtype=np.uint32).astype(np.uint8))
        pin = fr._core.latest()
        kept = []
        assert _core._with_bytearray(pin, lambda ba: (kept.append(ba), bytes(ba[:4]), len(ba))[1:]) == (b"\0\1\2\3", 4096)
        assert kept[0] == bytearray() and len(kept[0]) == 0
        with pytest.raises(BufferError):
            _core._with_bytearray(pin, lambda ba: ba.extend(b"x"))
        with pytest.raises(ZeroDivisionError):  # the callback's error comes through, emptied all the same
            _core._with_bytearray(pin, lambda ba: kept.append(ba) or 1 / 0)
        assert len(kept[1]) == 0
        with pytest.raises(TypeError):
            _core._with_bytearray(object(), len)
        del pin


def test_layout_mismatch_with_an_existing_local_object(unique_name):
    port = free_port()
    key = "sstest/" + uuid.uuid4().hex
    a = ss.bridge.session(listen=[f"tcp/127.0.0.1:{port}"])
    b = ss.bridge.session(listen=[], connect=[f"tcp/127.0.0.1:{port}"])
    try:
        with ss.SharedState.create(unique_name + "-src", ss.CONTROLLER), \
                ss.SharedState.create(unique_name + "-mir", [("a", "f8")]):
            ex = ss.bridge.export_state(unique_name + "-src", key, a)
            try:
                with pytest.raises(ss.LayoutMismatchError):
                    ss.bridge.import_state(key, unique_name + "-mir", b)
            finally:
                ex.close()
    finally:
        a.close()
        b.close()


# ---------------------------------------------------------------------------- two processes
def test_game_state_across_two_bridge_processes(unique_name):
    """C++ game-side simulator -> export (process 1) -> import (process 2) -> this reader:
    every value untorn, versions monotonic; then faults: kill -9 the exporter, restart it,
    restart the importer (cache), kill the game (token withdrawn)."""
    port = free_port()
    name, mirror = unique_name + "-game", unique_name + "-mir"
    key = "sstest/" + uuid.uuid4().hex
    sim = simulator(name, 60, 0)  # x == y == frame, as fast as it can
    exp = start(bridge_cmd("export", name, "--key", key, "--listen", f"tcp/127.0.0.1:{port}"))
    imp = start(bridge_cmd("import", key, "--as", mirror, "--connect", f"tcp/127.0.0.1:{port}", "--listen",
                           "tcp/127.0.0.1:0"))
    procs = [sim, exp, imp]
    try:
        wait_line(exp, "exporting")
        wait_line(imp, "importing")
        m = open_when_there(mirror)
        until(lambda: m.read().frame > 0, 20, "mirror receives values")
        last_v, last_frame, seen = 0, -1, 0
        t_end = time.monotonic() + 2.0
        while time.monotonic() < t_end:
            try:
                v = m.wait(since=last_v, timeout=1.0)
            except TimeoutError:
                continue
            s = m.read()
            assert s.x == s.y == s.frame, f"torn value {s}"
            assert s.is_pressing == bool(s.frame & 1) and s.is_open == (not s.is_pressing)
            assert v >= last_v and s.frame >= last_frame, "versions and values only move forward"
            last_v, last_frame, seen = v, s.frame, seen + 1
        assert seen > 20, f"only {seen} updates mirrored in 2 s"
        assert m.info()["source"]["alive"]

        # kill -9 the exporting bridge: reported gone within 1 s on loopback
        exp.kill()
        exp.wait()
        took = until(lambda: not m.info()["source"]["alive"], 5, "source gone after kill -9")
        assert took < 1.0, f"liveliness took {took:.2f} s"
        frozen = m.read().frame
        # a new exporter: the mirror resumes by itself (the importer reconnects)
        exp = start(bridge_cmd("export", name, "--key", key, "--listen", f"tcp/127.0.0.1:{port}"))
        procs.append(exp)
        wait_line(exp, "exporting")
        until(lambda: m.info()["source"]["alive"] and m.read().frame > frozen, 30, "mirror resumes")

        # restart the importer: the latest value arrives at once from the exporter's cache
        stop(imp)
        m.close()
        imp = start(bridge_cmd("import", key, "--as", mirror, "--connect", f"tcp/127.0.0.1:{port}", "--listen",
                               "tcp/127.0.0.1:0"))
        procs.append(imp)
        wait_line(imp, "importing")
        m = open_when_there(mirror)
        until(lambda: m.read().frame > 0, 10, "late joiner gets the cached latest value")

        # kill the game: its writer is gone, the token is withdrawn
        sim.kill()
        sim.wait()
        until(lambda: not m.info()["source"]["alive"], 5, "source gone after the game died")
        m.close()
    finally:
        stop(*procs)


def test_queue_of_100k_mixed_messages_complete_and_in_order(unique_name):
    port = free_port()
    name, mirror = unique_name + "-q", unique_name + "-qm"
    key = "sstest/" + uuid.uuid4().hex
    n = 100_000
    with ss.Queue.create(name, capacity=1 << 20) as q:
        imp = None
        exp = start(bridge_cmd("export", name, "--key", key, "--listen", f"tcp/127.0.0.1:{port}"))
        try:
            wait_line(exp, "exporting")
            imp = start(bridge_cmd("import", key, "--as", mirror, "--connect", f"tcp/127.0.0.1:{port}",
                                   "--listen", "tcp/127.0.0.1:0"))
            wait_line(imp, "importing")
            rng = np.random.default_rng(7)
            sizes = rng.integers(0, 2000, n)
            with ss.Queue.open(mirror) as out:
                got = 0

                def drain(block: float) -> None:
                    nonlocal got
                    while True:
                        try:
                            m = out.get(timeout=block)
                        except TimeoutError:
                            return
                        i = int.from_bytes(m[:4], "little")
                        assert i == got, f"message {got} expected, got {i}"
                        assert len(m) == 4 + int(sizes[i]) and m[4:] == bytes([i % 251]) * int(sizes[i])
                        got += 1
                        block = 0

                for i in range(n):
                    q.put(i.to_bytes(4, "little") + bytes([i % 251]) * int(sizes[i]), timeout=30)
                    if i % 512 == 0:
                        drain(0)
                t0 = time.monotonic()
                while got < n and time.monotonic() - t0 < 60:
                    drain(0.5)
                assert got == n, f"{got} of {n} messages arrived"
        finally:
            stop(exp, *([imp] if imp else []))


# ---------------------------------------------------------------------------- two hosts
def _can_netns() -> Optional[str]:
    if not LINUX or os.geteuid() != 0 or not shutil.which("ip"):
        return "needs Linux, root and iproute2 to make network namespaces"
    probe = f"sstprobe{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot create a network namespace here: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@pytest.fixture
def two_hosts() -> Iterator[tuple]:
    why = _can_netns()
    if why:
        pytest.skip(why)
    tag = uuid.uuid4().hex[:6]
    ha, hb, va, vb = f"ssta{tag}", f"sstb{tag}", f"vssa{tag}", f"vssb{tag}"
    ip_a, ip_b = "10.213.7.1", "10.213.7.2"  # only inside the two namespaces made here

    def sh(*cmd: str) -> None:
        subprocess.run(list(cmd), check=True, capture_output=True)

    try:
        sh("ip", "netns", "add", ha)
        sh("ip", "netns", "add", hb)
        sh("ip", "link", "add", va, "type", "veth", "peer", "name", vb)
        sh("ip", "link", "set", va, "netns", ha)
        sh("ip", "link", "set", vb, "netns", hb)
        for ns, dev, ip in ((ha, va, ip_a), (hb, vb, ip_b)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield (["ip", "netns", "exec", ha], ["ip", "netns", "exec", hb], ip_a, ip_b,
               lambda up: sh("ip", "-n", ha, "link", "set", va, "up" if up else "down"))
    finally:
        subprocess.run(["ip", "netns", "del", ha], capture_output=True)
        subprocess.run(["ip", "netns", "del", hb], capture_output=True)


def test_link_cut_between_two_hosts_loses_nothing(unique_name, two_hosts):
    """Exporter in namespace A, importer in namespace B (a veth pair); the link goes down for
    3 s mid-stream: the state mirror never shows a torn value and resumes; the queue delivers
    every message in order (the exporter's window holds them, then resends)."""
    in_a, in_b, ip_a, _, link = two_hosts
    port = 7447
    st_name, q_name = unique_name + "-st", unique_name + "-q"
    st_key, q_key = "sstest/" + uuid.uuid4().hex, "sstest/" + uuid.uuid4().hex
    n = 20_000
    # a producer in A: a state written with x == y == i and a queue of numbered messages
    # it ends on its own when its stdin closes, closing (and so removing) both objects; the
    # test waits for that exit: a SIGTERM during it would leave a segment behind
    producer = textwrap.dedent(f"""
        import sys, time, sharedstate as ss
        with ss.SharedState.create({st_name!r}, ss.CONTROLLER) as st, \\
                ss.Queue.create({q_name!r}, capacity=1 << 20) as q:
            print("ready", flush=True)
            for i in range({n}):
                st.write(x=i, y=i)
                q.put(i.to_bytes(4, "little") * 16, timeout=60)
                if i % 200 == 0:
                    time.sleep(0.01)
            print("produced", flush=True)
            sys.stdin.read()
    """)
    # /dev/shm is shared by the namespaces (network namespaces only): objects keep their names
    prod = subprocess.Popen([sys.executable, "-c", producer], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    procs = [prod]
    try:
        assert prod.stdout is not None and "ready" in prod.stdout.readline()
        exp = start(bridge_cmd("export", st_name, "--key", st_key, "--listen", f"tcp/{ip_a}:{port}"), in_a)
        procs.append(exp)
        wait_line(exp, "exporting")
        exq = start(bridge_cmd("export", q_name, "--key", q_key, "--listen", f"tcp/{ip_a}:{port + 1}"), in_a)
        procs.append(exq)
        wait_line(exq, "exporting")
        ims = start(bridge_cmd("import", st_key, "--as", st_name + "-m", "--connect", f"tcp/{ip_a}:{port}",
                               "--listen", "tcp/127.0.0.1:0"), in_b)
        imq = start(bridge_cmd("import", q_key, "--as", q_name + "-m", "--connect", f"tcp/{ip_a}:{port + 1}",
                               "--listen", "tcp/127.0.0.1:0"), in_b)
        procs += [ims, imq]
        wait_line(ims, "importing")
        wait_line(imq, "importing")
        with open_when_there(st_name + "-m") as m, ss.Queue.open(q_name + "-m") as out:
            _drain_across_a_cut(m, out, n, link)
    finally:
        if prod.stdin:
            prod.stdin.close()
        try:
            prod.wait(10)
        except subprocess.TimeoutExpired:
            pass  # stop() below kills it
        stop(*reversed(procs))


def _drain_across_a_cut(m: ss.SharedState, out: ss.Queue, n: int, link) -> None:
    got = 0
    cut_done = False
    t0 = time.monotonic()
    last = -1
    while got < n and time.monotonic() - t0 < 120:
        s = m.read()
        assert s.x == s.y, f"torn mirror value {s}"
        assert s.x >= last
        last = s.x
        if not cut_done and got > n // 4:
            link(False)
            time.sleep(3)
            link(True)
            cut_done = True
        try:
            msg = out.get(timeout=0.2)
        except TimeoutError:
            continue
        assert msg == got.to_bytes(4, "little") * 16, f"message {got} out of order or damaged"
        got += 1
    assert cut_done
    assert got == n, f"{got} of {n} queue messages arrived after a 3 s link cut"
    until(lambda: m.read().x == n - 1, 30, "state mirror catches up after the cut")


@pytest.mark.parametrize("zshm,same_host", [(False, False), (True, False), (False, True)],
                         ids=["tcp", "zenoh-shm", "same-host"])
def test_frames_of_1mib_arrive_untorn(unique_name, zshm, same_host):
    """Frames: 1 MiB frames, each one constant fill, exported and imported by two sessions;
    every frame the reader of the mirror holds is whole (checked after use), never a mix.
    tcp: whole frames through the socket. zenoh-shm: both sessions with Zenoh's shared memory
    and the exporter sending each frame in a Zenoh shm buffer (a borrowed bytearray: one copy);
    the segments Zenoh leaves are removed. same-host: the importer opens the exported Frames
    and copies from them; only versions go through Zenoh, no frame bytes (no K/data message)."""
    if zshm and not sys.platform.startswith("linux"):
        pytest.skip("Zenoh's shared memory is measured and cleaned up on Linux")
    before = zenoh_files() if zshm else set()
    port = free_port()
    src, mirror = unique_name + "-f", unique_name + "-fm"
    key = "sstest/" + uuid.uuid4().hex
    a = ss.bridge.session(listen=[f"tcp/127.0.0.1:{port}"], shared_memory=zshm or None)
    b = ss.bridge.session(listen=[], connect=[f"tcp/127.0.0.1:{port}"], shared_memory=zshm or None)
    try:
        with ss.Frames.create(src, (1024, 1024), np.uint8) as fr:
            fr.publish(np.full((1024, 1024), 1, np.uint8))
            ex = ss.bridge.export_frames(src, key, a, shared_memory=zshm)
            sent = []
            real_message = ex._frame_message
            ex._frame_message = lambda: sent.append(1) or real_message()  # type: ignore[method-assign]
            im = ss.bridge.import_frames(key, mirror, b, same_host=same_host)
            assert im.same_host == same_host
            try:
                with ss.Frames.open(mirror) as r:
                    assert r.shape == (1024, 1024) and r.dtype == np.uint8
                    until(lambda: r.version > 0, 10, "first frame mirrored")
                    seen = set()
                    writer_done = []

                    def write() -> None:
                        for i in range(2, 200):
                            fr.publish(np.full((1024, 1024), i % 256, np.uint8))
                        writer_done.append(True)

                    import threading
                    t = threading.Thread(target=write)
                    t.start()
                    v = r.version
                    while not writer_done or len(seen) < 2:
                        try:
                            v = r.wait(since=v, timeout=2.0)
                        except TimeoutError:
                            if writer_done:
                                break
                            continue
                        with r.latest() as f:
                            first = int(f[0, 0])
                            assert (f == first).all(), "a mirrored frame mixes two frames"
                            seen.add(first)
                        del f
                    t.join()
                    until(lambda: _latest_fill(r) == 199, 10, "the last frame arrives")
                    assert len(seen) >= 2
                    assert (ex.shm_messages > 0) == zshm, ex.shm_messages
                    assert (len(sent) == 0) == same_host, len(sent)  # whole frames sent, or none
            finally:
                im.close()
                ex.close()
    finally:
        a.close()
        b.close()
        if zshm:  # this process's Zenoh segments (unlinking a mapped segment is safe on Linux)
            for e in zenoh_files() - before:
                os.unlink(os.path.join("/dev/shm", e))


def test_same_host_frames_flow_only_while_the_export_lives(unique_name, sessions):
    """Same host: the importer copies from the exported Frames only while the export is alive
    (its liveliness token); after the exporter stops, new frames do not reach the mirror; a new
    exporter brings them back, the latest one at once."""
    src, mirror = unique_name + "-f", unique_name + "-fm"
    key = "sstest/" + uuid.uuid4().hex
    a, b = sessions
    with ss.Frames.create(src, (256, 256), np.uint8) as fr:
        fr.publish(np.full((256, 256), 1, np.uint8))
        with _same_host_link(src, mirror, key, a, b) as link:
            r, im = link["r"], link["im"]
            link["ex"].close()
            until(lambda: not im.source_alive, 10, "the export reported gone")
            v = r.version
            fr.publish(np.full((256, 256), 2, np.uint8))
            time.sleep(0.5)
            assert r.version == v and _latest_fill(r) == 1, "a frame came through a stopped export"
            link["ex"] = ss.bridge.export_frames(src, key, a)
            until(lambda: _latest_fill(r) == 2, 10, "the latest frame once the export is back")
            fr.publish(np.full((256, 256), 3, np.uint8))
            until(lambda: _latest_fill(r) == 3, 10, "frames flow again")


def test_same_host_importer_lets_a_restarted_game_create_its_frames_anew(unique_name, sessions):
    """Same host: while the export is gone the importer holds nothing of the game's Frames, so
    a restarted game creates them anew (not 'in use'); the next export of them is followed."""
    src, mirror = unique_name + "-f", unique_name + "-fm"
    key = "sstest/" + uuid.uuid4().hex
    a, b = sessions
    fr = ss.Frames.create(src, (64, 64), np.uint8)
    fr.publish(np.full((64, 64), 1, np.uint8))
    try:
        with _same_host_link(src, mirror, key, a, b) as link:
            r, im = link["r"], link["im"]
            link["ex"].close()  # the game and its export stop
            fr.close()
            until(lambda: not im.source_alive, 10, "the export reported gone")
            deadline = time.monotonic() + 10
            while True:  # the importer lets go within its poll
                try:
                    fr = ss.Frames.create(src, (64, 64), np.uint8)
                    break
                except FileExistsError:
                    assert time.monotonic() < deadline, "the importer still holds the old Frames"
                    time.sleep(0.05)
            fr.publish(np.full((64, 64), 7, np.uint8))
            link["ex"] = ss.bridge.export_frames(src, key, a)
            until(lambda: _latest_fill(r) == 7, 10, "the new game's frame through the new export")
            assert im.same_host and im.error is None
    finally:
        fr.close()


@contextlib.contextmanager
def _same_host_link(src: str, mirror: str, key: str, a, b) -> Iterator[dict]:
    """Export the Frames ``src`` under ``key`` on session a, import them as ``mirror`` on b (the
    same-host path), and wait for the first frame (filled with 1). Yields {"ex", "im", "r"} (r:
    the mirror opened); a test may replace "ex"; both links are closed at the end."""
    link = {"ex": ss.bridge.export_frames(src, key, a)}
    try:
        link["im"] = ss.bridge.import_frames(key, mirror, b)
        assert link["im"].same_host
        with ss.Frames.open(mirror) as r:
            until(lambda: r.version > 0 and _latest_fill(r) == 1, 10, "first frame mirrored")
            link["r"] = r
            yield link
    finally:
        if "im" in link:
            link["im"].close()
        link["ex"].close()


def _latest_fill(r) -> int:
    with r.latest() as f:
        v = int(f[0, 0])
    del f
    return v
