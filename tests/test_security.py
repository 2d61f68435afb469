"""Security defaults (docs/threat-model.md): objects are private to their user, names cannot
escape /dev/shm, and header sizes and offsets are checked against what is really mapped."""
from __future__ import annotations

import os
import stat
import struct
import sys
from pathlib import Path

import pytest

import sharedstate as ss

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX permissions and /dev/shm")

NOBODY = 65534


def _in_child(fn, *, umask=None, uid=None):
    """Run fn() in a forked child (optionally with a umask / as another uid); return what it
    reports: ("ok", repr) or (exception type name, message). A crash is reported as such."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(r)
            if umask is not None:
                os.umask(umask)
            if uid is not None:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            try:
                out = ("ok", repr(fn()))
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                out = (type(e).__name__, str(e))
            os.write(w, ("\0".join(out)).encode("utf-8", "replace"))
        except BaseException:  # noqa: BLE001
            code = 3
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child crashed: status {status:#x}"
    kind, _, msg = data.decode().partition("\0")
    return kind, msg


def _mode(name: str) -> int:
    return stat.S_IMODE(os.stat(f"/dev/shm/{name}").st_mode)


# ------------------------------------------------------------------------------ permissions
def test_segments_are_0600_even_with_a_permissive_umask(unique_name):
    def make():
        a = ss.SharedState.create(unique_name, ss.CONTROLLER, persistent=True)
        a.close()
        b = ss.SharedState.attach_raw(unique_name + "-raw", ss.CONTROLLER, create=True)
        b.close()
        return [_mode(unique_name), _mode(unique_name + "-raw")]

    try:
        kind, msg = _in_child(make, umask=0)
        assert (kind, msg) == ("ok", repr([0o600, 0o600]))
    finally:
        for n in (unique_name, unique_name + "-raw"):
            if os.path.exists(f"/dev/shm/{n}"):
                os.unlink(f"/dev/shm/{n}")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="dropping to another uid needs root (POSIX)")
def test_another_uid_cannot_open_a_segment(unique_name):
    with ss.SharedState.create(unique_name, ss.CONTROLLER) as st:
        st.write(x=42)
        for opener in (lambda: ss.SharedState.open(unique_name),
                       lambda: ss.SharedState.attach_raw(unique_name, ss.CONTROLLER)):
            kind, msg = _in_child(opener, uid=NOBODY)
            assert kind == "PermissionError", (kind, msg)
            assert unique_name in msg
        # nor remove it, nor judge it stale
        kind, msg = _in_child(lambda: ss._core.state_unlink(unique_name), uid=NOBODY)
        assert kind == "PermissionError", (kind, msg)
        kind, msg = _in_child(lambda: ss._core.state_remove_if_stale(unique_name), uid=NOBODY)
        assert kind in ("ok", "PermissionError") and msg != "True", (kind, msg)
        assert st.x == 42 and os.path.exists(f"/dev/shm/{unique_name}")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="dropping to another uid needs root (POSIX)")
def test_another_uid_cannot_squat_our_name_first(unique_name):
    """A segment another user created under the name we want: we refuse to use it."""
    def squat():
        with ss.SharedState.create(unique_name, ss.CONTROLLER, persistent=True):
            pass
        return _mode(unique_name)

    kind, msg = _in_child(squat, uid=NOBODY)
    try:
        assert (kind, msg) == ("ok", repr(0o600))
        assert os.stat(f"/dev/shm/{unique_name}").st_uid == NOBODY
        # root can open anything, so check as a third uid: neither open nor create works
        kind, msg = _in_child(lambda: ss.SharedState.open(unique_name), uid=NOBODY - 1)
        assert kind == "PermissionError", (kind, msg)
        kind, msg = _in_child(lambda: ss.SharedState.create(unique_name, ss.CONTROLLER), uid=NOBODY - 1)
        assert kind in ("FileExistsError", "PermissionError"), (kind, msg)
    finally:
        os.unlink(f"/dev/shm/{unique_name}")


# ------------------------------------------------------------------------------ names
@pytest.mark.parametrize("bad", ["../x", "..", ".", "a/b", "/abs", "a\\b", "", "x\0y", "Local\\..",
                                 "Global\\a/b", "sst-\n", "x" * 300])
def test_path_traversal_and_bad_names_fail_before_any_os_call(bad, unique_name):
    before = set(os.listdir("/dev/shm")), set(os.listdir("/dev"))
    for call in (lambda: ss.SharedState.create(bad, ss.CONTROLLER),
                 lambda: ss.SharedState.open(bad),
                 lambda: ss.SharedState.attach_raw(bad, ss.CONTROLLER, create=True),
                 lambda: ss._core.state_unlink(bad)):
        with pytest.raises(ValueError) as ei:
            call()
        msg = str(ei.value)
        assert "name" in msg and "shm_open" not in msg and "shm_unlink" not in msg, msg
    assert (set(os.listdir("/dev/shm")), set(os.listdir("/dev"))) == before


# ------------------------------------------------------------------------------ header bounds
def _fnv1a(data: bytes, h: int = 2166136261) -> int:
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def _checksum(data: bytearray) -> None:
    count = struct.unpack_from("<I", data, 36)[0]
    pre = bytearray(data[8:64])
    pre[40:44] = bytes(4)
    struct.pack_into("<I", data, 48, _fnv1a(bytes(data[256:256 + 48 * count]), _fnv1a(bytes(pre))))


def _valid(name: str) -> bytearray:
    with ss.SharedState.create(name, ss.CONTROLLER, persistent=True) as st:
        st.write(x=1)
    p = Path(f"/dev/shm/{name}")
    data = bytearray(p.read_bytes())
    p.unlink()
    return data


def _geometry(data, header_size, stride):
    struct.pack_into("<I", data, 12, header_size)
    struct.pack_into("<I", data, 32, stride)
    struct.pack_into("<Q", data, 16, header_size + 2 * stride)


# Every one keeps a correct checksum: only the bounds checks stand between it and a read
# past the mapping.
BOUNDS_CASES = {
    "stride_past_end": lambda d: _geometry(d, 512, 1 << 20),
    "header_past_end": lambda d: _geometry(d, 1 << 30, 64),
    "header_wraps_u32": lambda d: _geometry(d, 0xFFFFFFC0, 64),
    "stride_wraps": lambda d: _geometry(d, 512, 0xFFFFFFC0),
    "payload_past_stride": lambda d: struct.pack_into("<I", d, 24, 65),
    "field_offset_past_payload": lambda d: struct.pack_into("<I", d, 256 + 48 * 4 + 32, 12),
    "field_count_past_header": lambda d: struct.pack_into("<I", d, 36, 100),
    "field_count_huge": lambda d: struct.pack_into("<I", d, 36, 0xFFFFFFFF),
    "array_count_overflows": lambda d: struct.pack_into("<I", d, 256 + 36, 0x40000001),
    "fields_offset_moved": lambda d: struct.pack_into("<I", d, 40, 64),
    "segment_size_lies": lambda d: struct.pack_into("<Q", d, 16, 640 * 4),
}


@pytest.mark.parametrize("case", sorted(BOUNDS_CASES))
def test_header_sizes_and_offsets_are_checked_against_the_mapping(unique_name, case):
    data = _valid(unique_name)
    BOUNDS_CASES[case](data)
    _checksum(data)
    fd = os.open(f"/dev/shm/{unique_name}", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    os.write(fd, bytes(data))
    os.close(fd)
    try:
        kind, msg = _in_child(lambda: ss.SharedState.open(unique_name).read())
        assert kind == "CorruptSegmentError", (kind, msg)
        assert unique_name in msg
    finally:
        os.unlink(f"/dev/shm/{unique_name}")


# ------------------------------------------------------------------------------ the other objects
def test_queue_mailslot_and_semaphore_are_0600_even_with_a_permissive_umask(unique_name):
    def make():
        q = ss.Queue.create(unique_name + "-q", capacity=1024, persistent=True)
        q.close()
        s = ss.Semaphore.create(unique_name + "-s", initial=0)
        mode_s = _mode("sem." + unique_name + "-s")
        s.close()
        m = ss.Mailslot(unique_name + "-m")
        mode_m = _mode(unique_name + "-m.mailslot")
        m.close()
        return [_mode(unique_name + "-q"), mode_s, mode_m]

    try:
        kind, msg = _in_child(make, umask=0)
        assert (kind, msg) == ("ok", repr([0o600, 0o600, 0o600]))
    finally:
        for n in (unique_name + "-q", "sem." + unique_name + "-s", unique_name + "-m.mailslot"):
            if os.path.exists(f"/dev/shm/{n}"):
                os.unlink(f"/dev/shm/{n}")


def test_pipe_socket_directory_is_private(unique_name):
    def serve():
        srv = ss.PipeServer(unique_name)
        try:
            d = os.path.dirname(srv.path)
            return [stat.S_IMODE(os.lstat(d).st_mode), os.lstat(d).st_uid == os.geteuid()]
        finally:
            srv.close()

    kind, msg = _in_child(serve, umask=0)
    assert (kind, msg) == ("ok", repr([0o700, True]))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="dropping to another uid needs root (POSIX)")
def test_another_uid_cannot_use_our_queue_semaphore_or_pipe(unique_name):
    q = ss.Queue.create(unique_name + "-q", capacity=1024)
    s = ss.Semaphore.create(unique_name + "-s", initial=1)
    srv = ss.PipeServer(unique_name + "-p")
    try:
        kind, msg = _in_child(lambda: ss.Queue.open(unique_name + "-q"), uid=NOBODY)
        assert kind == "PermissionError" and unique_name in msg, (kind, msg)
        kind, msg = _in_child(lambda: ss.Semaphore.open(unique_name + "-s"), uid=NOBODY)
        assert kind == "PermissionError", (kind, msg)
        kind, msg = _in_child(lambda: ss.MailslotWriter(unique_name + "-q").send(b"x"), uid=NOBODY)
        assert kind in ("PermissionError", "FileNotFoundError"), (kind, msg)
        # Another user looks in its own socket directory: our server is not reachable, and
        # our directory is closed to it even by path.
        kind, msg = _in_child(lambda: ss.Pipe.connect(unique_name + "-p", timeout=0.3), uid=NOBODY)
        assert kind in ("FileNotFoundError", "TimeoutError", "PermissionError"), (kind, msg)
        kind, msg = _in_child(lambda: os.listdir(os.path.dirname(srv.path)), uid=NOBODY)
        assert kind == "PermissionError", (kind, msg)
        assert s.acquire(timeout=0)  # untouched
    finally:
        srv.close()
        s.unlink()
        s.close()
        q.close()
