"""Soak and fault tests: peers die or stop at any instruction, /dev/shm fills up, a foreign
object sits under our name, and thousands of create/open/close cycles leak nothing.

Budgets (defaults keep the file under ~30 s): SST_SOAK_ROUNDS (writer kill/stop rounds,
default 24), SST_LEAK_CYCLES (default 3000). scripts/hardening.sh raises both.
"""
from __future__ import annotations

import sys

import pytest

if not sys.platform.startswith("linux"):
    pytest.skip("POSIX signals, rlimits and /dev/shm (Windows: tests/test_windows.py and the C++ killed-writer tests)", allow_module_level=True)

import ctypes
import mmap
import multiprocessing as mp
import os
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import sharedstate as ss

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX signals and /dev/shm")

ROUNDS = int(os.environ.get("SST_SOAK_ROUNDS", "24"))
CYCLES = int(os.environ.get("SST_LEAK_CYCLES", "3000"))
FORK = mp.get_context("fork")  # children start at once, with the package already imported

# 16 KiB payload: a whole write takes long enough that random kills land inside writes.
BIG = ss.Layout([("tag", "<u4"), ("n", "<u8"), ("fill", "<u4", (4096,))])


def _payload(n: int) -> bytes:
    tag = n & 0xFFFFFFFF
    return struct.pack("<IIQ", tag, 0, n) + struct.pack("<I", tag) * 4096


def _consistent(s) -> bool:
    return int(s.n) & 0xFFFFFFFF == s.tag and all(v == s.tag for v in (s.fill[0], s.fill[-1], s.fill[2048])) and \
        bool((s.fill == s.fill[0]).all())


# ------------------------------------------------------------------------------ children
def _writer(name: str, start: int) -> None:
    st = ss.SharedState.open(name)
    n = start
    while True:  # until killed
        n += 1
        st.write(_payload(n))


def _reader(name: str, stop, reads, torn, max_gap_us) -> None:
    st = ss.SharedState.open(name)
    last = time.monotonic_ns()
    while not stop.is_set():
        for _ in range(20):
            s = st.read()
            if not _consistent(s):
                torn.value += 1
            reads.value += 1
        now = time.monotonic_ns()
        max_gap_us.value = max(max_gap_us.value, (now - last) // 1000)
        last = now
    st.close()


_children: list = []


def _start(target, *args):
    p = FORK.Process(target=target, args=args, daemon=True)
    p.start()
    _children.append(p)
    return p


@pytest.fixture(autouse=True)
def _no_child_left():
    """SIGKILL (and SIGCONT) every child a test started, whatever happened: a stopped child
    would otherwise hang multiprocessing's exit handler, which joins its daemons."""
    yield
    while _children:
        p = _children.pop()
        if p.is_alive():
            for sig in (signal.SIGKILL, signal.SIGCONT):
                try:
                    os.kill(p.pid, sig)
                except ProcessLookupError:
                    pass
            p.join(10)


def _owner_word(pid: int) -> int:
    """The lock owner word of a live process, as the library computes it (FORMAT.md)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    start = int(stat[stat.rindex(")") + 2:].split()[19])
    token = start & 0xFFFFFFFF or 1
    return (pid << 32) | token


def _poke_u64(name: str, offset: int, value: int) -> None:
    with open(f"/dev/shm/{name}", "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        m[offset:offset + 8] = struct.pack("<Q", value)


# ------------------------------------------------------------------------------ soak
def test_soak_writers_killed_and_stopped_at_random_points(unique_name):
    """Over many rounds a full-speed writer is SIGKILLed or SIGSTOPped at a random moment.
    A reader process reads all along: never a torn snapshot, never a pause. After a kill a
    new writer takes the lock over at once; after a stop, a writer either gets the lock (the
    stop landed between writes) or a TimeoutError naming the stopped pid."""
    rng = random.Random(os.getpid())
    st = ss.SharedState.create(unique_name, BIG)
    st.write(_payload(0))
    stop = FORK.Event()
    reads, torn, gap = FORK.Value("q", 0, lock=False), FORK.Value("q", 0, lock=False), FORK.Value("q", 0, lock=False)
    reader = _start(_reader, unique_name, stop, reads, torn, gap)
    kills = stops = stop_timeouts = 0
    takeover_max = 0.0
    try:
        for rnd in range(ROUNDS):
            v0 = st.version
            w = _start(_writer, unique_name, (rnd + 1) << 32)
            deadline = time.monotonic() + 10
            while st.version < v0 + 3 and time.monotonic() < deadline:
                time.sleep(0.001)
            assert st.version >= v0 + 3, "writer never got going"
            time.sleep(rng.uniform(0.0005, 0.02))
            if rng.random() < 0.35:
                os.kill(w.pid, signal.SIGSTOP)
                stops += 1
                r0 = reads.value
                t_stop = time.monotonic()
                while reads.value <= r0 + 100 and time.monotonic() - t_stop < 5:
                    time.sleep(0.005)
                assert reads.value > r0 + 100, "the reader waited for a stopped writer"
                st.lock_timeout = 0.3
                try:
                    st.write(_payload(10**12 + rnd))
                except TimeoutError as e:
                    stop_timeouts += 1
                    assert f"pid {w.pid}" in str(e), e
                os.kill(w.pid, signal.SIGKILL)  # dies stopped, maybe holding the lock
                os.kill(w.pid, signal.SIGCONT)
            else:
                os.kill(w.pid, signal.SIGKILL)
                kills += 1
            w.join(10)
            assert w.exitcode == -signal.SIGKILL
            snap = st.read()
            assert _consistent(snap), "a dead writer left a torn committed value"
            st.lock_timeout = 5
            t0 = time.monotonic()
            st.write(_payload(snap.n + 1))  # a new writer takes over (lock check period: 200 us)
            takeover_max = max(takeover_max, time.monotonic() - t0)
            assert st.read().n == snap.n + 1
        stop.set()
        reader.join(20)
        assert reader.exitcode == 0
        info = st.info()
        print(f"\nsoak: {ROUNDS} rounds, {kills} SIGKILL + {stops} SIGSTOP ({stop_timeouts} lock timeouts naming "
              f"the pid), {info['recoveries']} dead-writer recoveries, {reads.value} reads, {torn.value} torn, "
              f"reader max gap {gap.value / 1000:.1f} ms, slowest takeover {takeover_max * 1000:.1f} ms")
        assert torn.value == 0
        assert reads.value > 0
        assert takeover_max < 2.0
        assert gap.value < 2_000_000, "a reader was blocked for seconds"
    finally:
        stop.set()
        if reader.is_alive():
            reader.kill()
        st.close()


def _sleeper():
    while True:
        time.sleep(1)


def test_lock_held_by_a_stopped_then_killed_process_and_by_a_recycled_pid(unique_name):
    """Deterministic: the lock word names a live process that we then stop (writers time out
    naming it, readers carry on), then kill (taken over); and a word whose pid is alive but
    whose start token is not that process's (pid reuse) is taken over at once."""
    st = ss.SharedState.create(unique_name, ss.CONTROLLER)
    st.write(x=1, y=1)
    p = _start(_sleeper)
    try:
        _poke_u64(unique_name, 64, _owner_word(p.pid))
        os.kill(p.pid, signal.SIGSTOP)
        st.lock_timeout = 0.2
        with pytest.raises(TimeoutError, match=f"pid {p.pid}"):
            st.write(x=2)
        assert st.read().x == 1 and st.info()["lock_owner_pid"] == p.pid
        os.kill(p.pid, signal.SIGKILL)
        os.kill(p.pid, signal.SIGCONT)
        p.join(10)
        t0 = time.monotonic()
        st.write(x=3, y=3)
        assert time.monotonic() - t0 < 1.0
        assert st.read().x == 3 and st.info()["recoveries"] == 1
        # pid reuse: our parent's pid (alive), a start token that is not its own
        word = _owner_word(os.getppid()) ^ 0x5A5A5A5A
        _poke_u64(unique_name, 64, word)
        st.write(x=4)
        assert st.x == 4 and st.info()["recoveries"] == 2
    finally:
        if p.is_alive():
            p.kill()
        st.close()


def _creator(name, q):
    st = ss.SharedState.create(name, ss.CONTROLLER)
    st.write(x=5)
    q.put("ready")
    while True:
        time.sleep(1)


def test_creators_killed_over_many_rounds_are_reclaimed(unique_name):
    """The creator is killed (no close, no atexit); its segment is removed by the next open
    (FileNotFoundError naming it) or replaced by the next create."""
    reclaimed_open = replaced = 0
    for rnd in range(max(ROUNDS // 3, 4)):
        name = f"{unique_name}-{rnd}"
        q = FORK.Queue()
        c = _start(_creator, name, q)
        assert q.get(timeout=20) == "ready"
        os.kill(c.pid, signal.SIGKILL)
        c.join(10)
        assert os.path.exists(f"/dev/shm/{name}")
        if rnd % 2 == 0:
            with pytest.raises(FileNotFoundError, match=name):
                ss.SharedState.open(name)
            assert not os.path.exists(f"/dev/shm/{name}")
            reclaimed_open += 1
        else:
            with ss.SharedState.create(name, ss.CONTROLLER) as st:
                assert st.version == 0 and st.x == 0  # a fresh segment
            replaced += 1
    print(f"\ncreators killed: {reclaimed_open} reclaimed by open, {replaced} replaced by create")


# ------------------------------------------------------------------------------ /dev/shm full
RUN_CREATE = textwrap.dedent(r"""
    import errno, os, resource, sys
    import sharedstate as ss
    name, size, fsize = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if fsize:
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    layout = ss.Layout([("data", f"V{size}")])
    try:
        st = ss.SharedState.create(name, layout)
    except OSError as e:
        print("OSError", errno.errorcode.get(e.errno, e.errno), e, flush=True)
        sys.exit(0)
    st.write(data=b"\x01" * size)
    print("created", st.read().data[:1] == b"\x01", flush=True)
    st.close()
""")


def _run(args, timeout=60, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)


def test_file_size_limit_gives_a_clear_oserror_not_a_signal(unique_name):
    """RLIMIT_FSIZE below the segment: ftruncate fails (EFBIG) and the interpreter survives."""
    r = _run([sys.executable, "-c", RUN_CREATE, unique_name, str(1 << 20), str(64 << 10)])
    assert r.returncode == 0, f"child died: {r.returncode} {r.stderr}"
    assert r.stdout.startswith("OSError EFBIG") and unique_name in r.stdout, r.stdout
    assert not os.path.exists(f"/dev/shm/{unique_name}")


def _private_small_shm():
    """`unshare -m` + a 1 MiB tmpfs over /dev/shm, seen by that child only (root only)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) for a private small /dev/shm")
    probe = _run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                  "mount -t tmpfs -o size=1m tmpfs /dev/shm && echo ok"])
    if probe.stdout.strip() != "ok":
        pytest.skip(f"cannot mount a private tmpfs here: {probe.stderr.strip()}")
    return ["unshare", "-m", "--propagation", "private", "sh", "-c",
            'mount -t tmpfs -o size=1m tmpfs /dev/shm && exec "$@"', "sh"]


def test_full_dev_shm_gives_enospc_not_sigbus(unique_name):
    """In a private 1 MiB /dev/shm: a 4 MiB segment fails with ENOSPC at create (the space is
    reserved up front, so no SIGBUS on first touch); one that fits works."""
    wrap = _private_small_shm()
    r = _run(wrap + [sys.executable, "-c", RUN_CREATE, unique_name, str(2 << 20), "0"])
    assert r.returncode == 0, f"child died: {r.returncode} {r.stderr}"
    assert r.stdout.startswith("OSError ENOSPC") and unique_name in r.stdout, r.stdout
    r = _run(wrap + [sys.executable, "-c", RUN_CREATE, unique_name, str(300 << 10), "0"])
    assert r.returncode == 0 and r.stdout.strip() == "created True", (r.returncode, r.stdout, r.stderr)


SPARSE_OPEN = textwrap.dedent(r"""
    import mmap, os, struct, sys
    import sharedstate as ss
    name, how = sys.argv[1], sys.argv[2]
    # A hostile or careless peer: a header that says 2 x 2 MiB, the object only ftruncate'd
    # (sparse), in a /dev/shm that cannot back it.
    with ss.SharedState.create(name, ss.Layout([("data", "V2097152")]), persistent=True) as st:
        pass
    fd = os.open(f"/dev/shm/{name}", os.O_RDWR)
    data = os.pread(fd, 4096, 0)
    os.unlink(f"/dev/shm/{name}")
    fd2 = os.open(f"/dev/shm/{name}", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.ftruncate(fd2, os.fstat(fd).st_size)
    os.pwrite(fd2, data, 0)
    # fill the rest of /dev/shm
    filler = os.open("/dev/shm/filler", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(filler, b"\0" * 65536)
    except OSError:
        pass
    print("planted", flush=True)
    try:
        if how == "raw":
            st = ss.SharedState.attach_raw(name, ss.Layout([("data", "V4194304")]))
        else:
            st = ss.SharedState.open(name)
        st.read()
        st.write(data=b"\x07" * 16)
        print("ok", flush=True)
    except OSError as e:
        print("OSError", e.errno, e, flush=True)
""")


@pytest.mark.parametrize("how", ["open", "raw"])
def test_sparse_segment_in_full_dev_shm(unique_name, how):
    """A segment whose pages were never reserved (a peer only ftruncate'd it), in a full
    /dev/shm: the first touch of a hole would be a SIGBUS that kills the interpreter. The
    library reserves the pages when it maps, so this is a clear ENOSPC naming the segment."""
    wrap = _private_small_shm()
    # 2 MiB payload needs 4 MiB: give the private tmpfs 8 MiB so that the create fits first.
    wrap = [w.replace("size=1m", "size=8m") for w in wrap]
    r = _run(wrap + [sys.executable, "-c", SPARSE_OPEN, unique_name, how])
    assert "planted" in r.stdout, (r.returncode, r.stdout, r.stderr)
    assert r.returncode != -signal.SIGBUS, f"{how}: SIGBUS on first touch of a sparse segment in a full /dev/shm"
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert "OSError 28" in r.stdout and "posix_fallocate" in r.stdout and unique_name in r.stdout, r.stdout


# ------------------------------------------------------------------------------ foreign objects
def test_foreign_segment_under_our_name_is_refused_and_left_alone(unique_name):
    """A multiprocessing.shared_memory segment with our name: open() raises
    CorruptSegmentError, create() FileExistsError; neither changes or removes it."""
    from multiprocessing import shared_memory

    shm = shared_memory.SharedMemory(name=unique_name, create=True, size=4096)
    try:
        shm.buf[:4096] = bytes(random.Random(7).getrandbits(8) for _ in range(4096))
        before = bytes(shm.buf)
        for _ in range(3):
            with pytest.raises(ss.CorruptSegmentError, match=unique_name):
                ss.SharedState.open(unique_name)
            with pytest.raises(FileExistsError):
                ss.SharedState.create(unique_name, ss.CONTROLLER)
        assert os.path.exists(f"/dev/shm/{unique_name}")
        assert bytes(shm.buf) == before, "a foreign segment was written to"
        assert not ss._core.state_remove_if_stale(unique_name)
        # a small foreign object too (shorter than any header)
        shm2 = shared_memory.SharedMemory(name=unique_name + "-s", create=True, size=12)
        try:
            with pytest.raises(ss.CorruptSegmentError):
                ss.SharedState.open(unique_name + "-s")
            assert os.path.exists(f"/dev/shm/{unique_name}-s")
        finally:
            shm2.close()
            shm2.unlink()
    finally:
        shm.close()
        shm.unlink()


# ------------------------------------------------------------------------------ leaks
def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _maps() -> int:
    return Path("/proc/self/maps").read_text().count("\n")


def _rss_kib() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def test_no_fd_mapping_or_rss_growth_over_many_cycles(unique_name):
    """create / open / read / write / view / wait / close, plus the error paths (missing,
    foreign, exists, bad name), many times: descriptors and mappings return to where they
    started and RSS stays flat after a warm-up."""
    layout = ss.Layout([("a", "<i8"), ("b", "<f8", (30,))])
    foreign = Path(f"/dev/shm/{unique_name}-foreign")
    foreign.write_bytes(b"\x11" * 512)
    os.chmod(foreign, 0o600)

    def cycle(i):
        with ss.SharedState.create(unique_name, layout) as a:
            with ss.SharedState.open(unique_name) as b:
                a.write(a=i)
                assert b.read().a == i
                v = b.view()
                assert int(v["a"][0]) == i
                buf = bytearray(layout.size)
                b.read_into(buf)
                try:
                    b.wait(since=b.version, timeout=0)
                except TimeoutError:
                    pass
                del v
        for bad in (lambda: ss.SharedState.open(unique_name), lambda: ss.SharedState.open(f"{unique_name}-foreign"),
                    lambda: ss.SharedState.open("a/b")):
            try:
                bad()
            except (OSError, ValueError):
                pass

    try:
        for i in range(max(CYCLES // 10, 50)):  # warm-up: caches, allocator arenas
            cycle(i)
        fd0, maps0, rss0 = _fds(), _maps(), _rss_kib()
        t0 = time.monotonic()
        for i in range(CYCLES):
            cycle(i)
        dt = time.monotonic() - t0
        fd1, maps1, rss1 = _fds(), _maps(), _rss_kib()
    finally:
        foreign.unlink()
    print(f"\nleaks over {CYCLES} cycles ({dt:.1f} s): fds {fd0}->{fd1}, mappings {maps0}->{maps1}, "
          f"RSS {rss0}->{rss1} KiB ({rss1 - rss0:+d})")
    assert fd1 == fd0, "file descriptors leaked"
    assert maps1 <= maps0 + 2, "mappings leaked"
    assert rss1 - rss0 < 4096, "RSS grew by more than 4 MiB"


# ------------------------------------------------------------------------------ queue, pipe, semaphore
def _qmsg(pid: int, seq: int) -> bytes:
    n = 8 + (seq * 37) % 700
    return struct.pack("<IQ", pid, seq) + bytes([(pid + seq) & 255]) * n


def _qcheck(m: bytes):
    pid, seq = struct.unpack_from("<IQ", m)
    assert m == _qmsg(pid, seq), f"torn message from pid {pid} seq {seq}"
    return pid, seq


def _producer(name: str) -> None:
    q = ss.Queue.open(name)
    pid, seq = os.getpid(), 0
    while True:  # until killed
        seq += 1
        q.put(_qmsg(pid, seq), timeout=None)


def _consumer_once(name: str, q_out) -> None:
    q = ss.Queue.open(name)
    q_out.put(len(q.get(timeout=10)))
    while True:  # holds the consumer claim until killed
        time.sleep(1)


def test_soak_queue_producers_killed_and_stopped(unique_name):
    """Producers are SIGKILLed or SIGSTOPped at random points while this process consumes:
    every delivered message is whole and in order per producer, and after each round the
    queue still carries a message end to end."""
    rng = random.Random(os.getpid() + 1)
    q = ss.Queue.create(unique_name, capacity=1 << 14)
    rounds = max(ROUNDS // 2, 8)
    got = kills = stops = 0
    last: dict = {}
    try:
        for rnd in range(rounds):
            procs = [_start(_producer, unique_name) for _ in range(2)]
            t_end = time.monotonic() + rng.uniform(0.02, 0.1)
            while time.monotonic() < t_end:
                try:
                    pid, seq = _qcheck(q.get(timeout=0.5))
                except TimeoutError:
                    continue
                assert seq > last.get(pid, 0), "out of order"
                last[pid] = seq
                got += 1
            for p in procs:
                if rng.random() < 0.3:
                    os.kill(p.pid, signal.SIGSTOP)
                    stops += 1
                    time.sleep(0.005)
                os.kill(p.pid, signal.SIGKILL)
                os.kill(p.pid, signal.SIGCONT)
                kills += 1
            for p in procs:
                p.join(10)
            while True:  # drain what the dead left: whole messages only
                try:
                    pid, seq = _qcheck(q.get(timeout=0.2))
                except TimeoutError:
                    break
                assert seq > last.get(pid, 0)
                last[pid] = seq
                got += 1
            q.put(b"alive-%d" % rnd, timeout=5)
            assert q.get(timeout=5) == b"alive-%d" % rnd
        info = q.info()
        print(f"\nqueue soak: {rounds} rounds, {kills} producers killed ({stops} stopped first), {got} messages "
              f"intact, {info['skipped']} half-written skipped, {info['recoveries']} reserve-lock recoveries")
        assert got > 0
    finally:
        q.close()


def test_consumer_killed_while_holding_the_queue(unique_name):
    q = ss.Queue.create(unique_name, capacity=4096)
    q.put(b"first")
    q.put(b"second")
    out = FORK.Queue()
    c = _start(_consumer_once, unique_name, out)
    try:
        assert out.get(timeout=20) == 5
        os.kill(c.pid, signal.SIGKILL)
        c.join(10)
        assert q.get(timeout=5) == b"second"  # the dead consumer's claim is taken over
    finally:
        if c.is_alive():
            c.kill()
        q.close()


def _pipe_client(name: str, size: int) -> None:
    p = ss.Pipe.connect(name, timeout=10)
    p.send(b"hello")
    big = b"\xab" * size
    while True:  # until killed, possibly in the middle of a message
        p.send(big)


def test_pipe_clients_killed_mid_message(unique_name):
    """A client is killed while it sends large messages: the server gets only whole
    messages, then BrokenPipeError (or EOFError), and goes on accepting clients."""
    rng = random.Random(os.getpid() + 2)
    srv = ss.PipeServer(unique_name)
    rounds = max(ROUNDS // 3, 6)
    whole = ends = 0
    try:
        for rnd in range(rounds):
            size = rng.choice([1000, 100_000, 3_000_000])
            c = _start(_pipe_client, unique_name, size)
            conn = srv.accept(timeout=20)
            assert conn.recv(timeout=20) == b"hello"
            time.sleep(rng.uniform(0.0, 0.03))
            os.kill(c.pid, signal.SIGKILL)
            c.join(10)
            try:
                while True:
                    m = conn.recv(timeout=10)
                    assert m == b"\xab" * size, f"partial message of {len(m)} bytes"
                    whole += 1
            except (BrokenPipeError, EOFError):
                ends += 1
            conn.close()
        print(f"\npipe: {rounds} clients killed mid-send, {whole} whole messages, {ends} clean ends, 0 partial")
        assert ends == rounds
    finally:
        srv.close()


def _sem_holder(name: str, q_out) -> None:
    s = ss.Semaphore.open(name)
    assert s.acquire(timeout=5)
    q_out.put("held")
    while True:
        time.sleep(1)


def test_semaphore_holder_killed(unique_name):
    """POSIX and Windows semaphores are counters, not owned locks: a holder that dies does not
    give its unit back. Waiters then time out cleanly (never hang past their timeout), and a
    release from anyone restores it."""
    s = ss.Semaphore.create(unique_name, initial=1)
    out = FORK.Queue()
    h = _start(_sem_holder, unique_name, out)
    try:
        assert out.get(timeout=20) == "held"
        os.kill(h.pid, signal.SIGKILL)
        h.join(10)
        t0 = time.monotonic()
        assert s.acquire(timeout=0.2) is False
        assert time.monotonic() - t0 < 5
        s.release()
        assert s.acquire(timeout=1)
    finally:
        if h.is_alive():
            h.kill()
        s.unlink()
        s.close()
