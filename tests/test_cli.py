"""The command line, run as a shell user would: real processes, exit codes, stderr."""
from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sharedstate as ss

LINUX = sys.platform.startswith("linux")
linux_only = pytest.mark.skipif(not LINUX, reason="lists /dev/shm (Linux)")

HOLD = """
import sys, sharedstate as ss
st = ss.SharedState.create(sys.argv[1], ss.CONTROLLER)
st.write(x=int(sys.argv[2]), y=-4, is_running=True)
print("ready", flush=True)
sys.stdin.read()
st.close()
"""

WRITE_FOREVER = """
import sys, time, sharedstate as ss
st = ss.SharedState.create(sys.argv[1], ss.CONTROLLER)
print("ready", flush=True)
i = 0
while True:
    i += 1
    st.write(x=i, y=-i)
    time.sleep(0.001)
"""

DIE_HOLDING = """
import os, sys, sharedstate as ss
st = ss.SharedState.create(sys.argv[1], ss.CONTROLLER)
st.write(x=7)
os._exit(0)   # no close: the segment stays behind with no holder
"""


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sharedstate", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def holder(unique_name):
    """A child process that created unique_name (x=42) and holds it until stdin closes."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, unique_name, "42"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    yield p
    p.stdin.close()
    p.wait(timeout=30)


@pytest.fixture
def stale(unique_name):
    """A segment whose creator died without closing it."""
    subprocess.run([sys.executable, "-c", DIE_HOLDING, unique_name], check=True, timeout=60)
    assert ss._core.segment_exists(unique_name)
    yield unique_name
    try:
        ss._core.state_unlink(unique_name)
    except FileNotFoundError:
        pass


# ---------------------------------------------------------------- ls
@linux_only
def test_ls_lists_a_live_state_without_touching_it(holder, unique_name):
    r = cli("ls")
    assert r.returncode == 0, r.stderr
    line = next(l for l in r.stdout.splitlines() if unique_name in l)
    assert line.split()[0] == "state"
    assert f"yes {holder.pid}" in line
    assert "x:i4 y:i4 is_open:bool is_running:bool is_pressing:bool" in line
    r = cli("ls", "--json")
    assert r.returncode == 0
    (d,) = [o for o in json.loads(r.stdout) if o["name"] == unique_name]
    assert d["kind"] == "state" and d["holders_alive"] is True and d["holder_pids"] == [holder.pid]
    assert d["version"] == 1 and d["payload_size"] == 12 and d["persistent"] is False
    assert [f["name"] for f in d["layout"]] == ["x", "y", "is_open", "is_running", "is_pressing"]
    assert d["last_writer"] == {"pid": holder.pid, "alive": True}
    # Looking took no holder: the creator is still the only one.
    assert ss._core.segment_held(unique_name)
    r = cli("ls", "--json")
    (d,) = [o for o in json.loads(r.stdout) if o["name"] == unique_name]
    assert d["holder_pids"] == [holder.pid]


@linux_only
def test_ls_and_inspect_leave_a_stale_segment_for_cleanup(stale):
    for args in (("ls", "--json"), ("inspect", stale), ("inspect", "--json", stale)):
        r = cli(*args)
        assert r.returncode == 0, (args, r.stderr)
        assert ss._core.segment_exists(stale), f"{args} removed a stale segment"
    d = json.loads(cli("inspect", "--json", stale).stdout)
    assert d["holders_alive"] is False and d["value"]["x"] == 7
    assert "no (stale" in cli("inspect", stale).stdout
    r = cli("cleanup")
    assert r.returncode == 0 and f"removed {stale}" in r.stdout
    assert not ss._core.segment_exists(stale)


@linux_only
def test_ls_kinds_by_magic_and_foreign_bytes(unique_name):
    paths = {}
    header = bytearray(256)
    header[0:8] = b"SHQUEUE1"
    struct.pack_into("<HHIQ", header, 8, 1, 2, 256, 4096)
    paths["queue"] = (unique_name + "-q", bytes(header))
    paths["mailslot"] = (unique_name + "-box.mailslot", bytes(header))  # Linux mailslots are queues
    paths["other"] = (unique_name + "-legacy", b"\x01\x02\x03" * 7)
    bad = bytearray(os.urandom(700))
    bad[0:8] = b"SHSTATE1"
    paths["corrupt"] = (unique_name + "-bad", bytes(bad))
    paths["truncated"] = (unique_name + "-short", b"SHSTATE1\x01\x00")
    try:
        for name, data in paths.values():
            with open(f"/dev/shm/{name}", "wb") as f:
                f.write(data)
        r = cli("ls", "--json")
        assert r.returncode == 0, r.stderr
        objs = {o["name"]: o for o in json.loads(r.stdout)}
        assert objs[paths["queue"][0]]["kind"] == "queue"
        assert objs[unique_name + "-box"]["kind"] == "mailslot"
        assert paths["other"][0] not in objs  # only with --all
        assert objs[paths["corrupt"][0]]["problem"]
        assert objs[paths["truncated"][0]]["problem"].startswith("truncated")
        r = cli("ls", "--all")
        assert r.returncode == 0 and paths["other"][0] in r.stdout
        r = cli("inspect", paths["other"][0])
        assert r.returncode == 0 and "no sharedstate header" in r.stdout and "010203" in r.stdout
        r = cli("inspect", paths["corrupt"][0])
        assert r.returncode == 1 and r.stderr.strip(), "a corrupt header is reported on stderr"
        assert "Traceback" not in r.stderr
        r = cli("watch", "--count", "1", paths["corrupt"][0])
        assert r.returncode == 1 and "Traceback" not in r.stderr
    finally:
        for name, _ in paths.values():
            try:
                os.unlink(f"/dev/shm/{name}")
            except FileNotFoundError:
                pass


# ---------------------------------------------------------------- inspect
def test_inspect_shows_header_layout_value_and_writer(holder, unique_name):
    r = cli("inspect", unique_name)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert unique_name in out and "state" in out
    assert f"last writer     pid {holder.pid}" in out
    assert "writer lock     free" in out
    for field, value in (("x", "42"), ("y", "-4"), ("is_running", "True"), ("is_open", "False")):
        assert any(l.split()[0] == field and l.rstrip().endswith("= " + value) for l in out.splitlines()
                   if l.startswith("    ")), (field, out)
    d = json.loads(cli("inspect", "--json", unique_name).stdout)
    assert d["value"] == {"x": 42, "y": -4, "is_open": False, "is_running": True, "is_pressing": False}
    assert d["version"] == 1


def test_missing_object_and_bad_usage_exit_codes(unique_name):
    for args in (("inspect", unique_name), ("watch", "--count", "1", unique_name), ("rm", unique_name)):
        r = cli(*args)
        assert r.returncode == 1, args
        assert unique_name in r.stderr and r.stdout == "" and "Traceback" not in r.stderr
    assert cli("rm", "-f", unique_name).returncode == 0
    assert cli().returncode == 2                      # no command
    assert cli("frobnicate").returncode == 2          # unknown command
    assert cli("inspect").returncode == 2             # missing NAME
    r = cli("inspect", "a/b")
    assert r.returncode == 2 and "bad name" in r.stderr
    assert cli("watch", "--interval", "0", unique_name).returncode == 2


# ---------------------------------------------------------------- watch
def test_watch_shows_updates_with_a_rate(unique_name):
    w = subprocess.Popen([sys.executable, "-c", WRITE_FOREVER, unique_name], stdout=subprocess.PIPE, text=True)
    try:
        assert w.stdout.readline().strip() == "ready"
        r = cli("watch", "--plain", "--count", "4", "--interval", "0.1", unique_name)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert len(lines) == 4
        versions = [int(l.split()[0].split("=")[1]) for l in lines]
        assert versions == sorted(versions) and versions[-1] > versions[0]
        assert float(lines[-1].split()[1].split("=")[1].rstrip("/s")) > 0
        for l in lines:  # x == -y in every write: a torn read would break it
            vals = dict(kv.split("=", 1) for kv in l.split()[2:])
            assert int(vals["x"]) == -int(vals["y"])
    finally:
        w.kill()
        w.wait()
    ss._core.state_remove_if_stale(unique_name)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_watch_ctrl_c_exits_cleanly_and_redraws_in_place(holder, unique_name):
    import pty
    master, slave = pty.openpty()  # a terminal: the in-place redraw path
    p = subprocess.Popen([sys.executable, "-m", "sharedstate", "watch", "-n", "0.05", unique_name],
                         stdout=slave, stderr=subprocess.PIPE, text=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 20
    while out.count(b"version") < 3 and time.monotonic() < deadline:
        out += os.read(master, 4096)
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=20) == 0
    assert "Traceback" not in p.stderr.read()
    os.close(master)
    assert b"\x1b[6F" in out, "redraws move the cursor back over the 6 lines drawn"
    assert b"42" in out


@linux_only
def test_watch_ends_when_the_state_goes_away(unique_name):
    w = subprocess.Popen([sys.executable, "-c", HOLD, unique_name, "9"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert w.stdout.readline().strip() == "ready"
    watch = subprocess.Popen([sys.executable, "-m", "sharedstate", "watch", "--plain", "-n", "0.05", unique_name],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "x=9" in watch.stdout.readline()
    w.stdin.close()  # the only holder closes: the segment goes away (watch holds nothing)
    assert w.wait(timeout=30) == 0
    out, err = watch.communicate(timeout=30)
    assert watch.returncode == 0 and "is gone" in err
    assert not ss._core.segment_exists(unique_name)


# ---------------------------------------------------------------- rm, cleanup, entry points
@linux_only
def test_rm_refuses_a_held_object_unless_forced(holder, unique_name):
    r = cli("rm", unique_name)
    assert r.returncode == 1 and "in use" in r.stderr and str(holder.pid) in r.stderr
    assert ss._core.segment_exists(unique_name)
    r = cli("rm", "-fv", unique_name)
    assert r.returncode == 0 and f"removed state {unique_name}" in r.stdout
    assert not ss._core.segment_exists(unique_name)


@linux_only
def test_rm_removes_a_stale_object(stale):
    assert cli("rm", stale).returncode == 0
    assert not ss._core.segment_exists(stale)


def test_console_script_and_module_help():
    r = cli("--help")
    assert r.returncode == 0
    for cmd in ("ls", "inspect", "watch", "rm", "cleanup", "demo"):
        assert cmd in r.stdout
    assert "never changes lifetime" in r.stdout
    exe = shutil.which("sharedstate", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("the 'sharedstate' console script is not installed next to this interpreter")
    r = subprocess.run([exe, "ls", "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "--json" in r.stdout


SERVE = """
import sys, sharedstate as ss
srv = ss.PipeServer(sys.argv[1])
sem = ss.Semaphore.create(sys.argv[1] + "-sem", initial=1)
print("ready", flush=True)
sys.stdin.read()
srv.close(); sem.unlink(); sem.close()
"""


@linux_only
@pytest.mark.skipif(not all(hasattr(ss, n) for n in ("PipeServer", "Semaphore")),
                    reason="API not yet available: sharedstate.PipeServer / Semaphore")
def test_ls_and_inspect_pipes_and_semaphores(unique_name):
    p = subprocess.Popen([sys.executable, "-c", SERVE, unique_name], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        objs = {(o["kind"], o["name"]): o for o in json.loads(cli("ls", "--json").stdout)}
        pipe = objs[("pipe", unique_name)]
        assert pipe["holders_alive"] and pipe["holder_pids"] == [p.pid] and pipe["problem"] is None
        sem = objs[("semaphore", unique_name + "-sem")]
        assert sem["holders_alive"] and p.pid in sem["holder_pids"]
        r = cli("inspect", unique_name)
        assert r.returncode == 0 and "pipe" in r.stdout and ".sock" in r.stdout
        r = cli("rm", unique_name + "-sem")
        assert r.returncode == 1 and "in use" in r.stderr
    finally:
        p.stdin.close()
        assert p.wait(timeout=30) == 0
    assert cli("inspect", unique_name).returncode == 1


def test_inspect_by_opening_the_windows_path(unique_name):
    """What inspect does on Windows (no /dev/shm): the core's look, which opens the object
    there; the same call everywhere, checked natively too."""
    from sharedstate import _cli
    with ss.SharedState.create(unique_name, ss.CONTROLLER) as st:
        st.write(x=4, is_open=True)
        d = _cli._describe_opened(unique_name)
        assert d["kind"] == "state" and d["version"] == 1 and d["value"]["x"] == 4 and d["value"]["is_open"]
        assert d["last_writer"] == {"pid": os.getpid(), "alive": True}
    if hasattr(ss, "Queue"):
        with ss.Queue.create(unique_name + "-q", 4096) as q:
            q.put(b"abc")
            d = _cli._describe_opened(unique_name + "-q")
            assert d["kind"] == "queue" and d["capacity"] == 4096 and d["pending"] == 1


# ---------------------------------------------------------------- the documented limits
# docs/FORMAT.md and docs/guide.md: 4096 fields, field names 31 bytes, object names 200
# bytes, a payload of 2^30 bytes. The CLI reads through the core's own validation, so a
# segment at every maximum is healthy there too.
MAX_FIELDS, MAX_FIELD_NAME, MAX_NAME, MAX_PAYLOAD = 4096, 31, 200, 1 << 30


def _mem_available() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _healthy_everywhere(name: str, *, fields: int, check_value) -> None:
    # Generous timeouts: these only stop a hung child; a 1 GiB copy on a loaded machine is slow.
    if LINUX:
        r = cli("ls", "--json", timeout=600)
        assert r.returncode == 0, r.stderr
        (d,) = [o for o in json.loads(r.stdout) if o["name"] == name]
        assert d["kind"] == "state" and d["problem"] is None and len(d["layout"]) == fields, d.get("problem")
        r = cli("ls", timeout=600)
        line = next(l for l in r.stdout.splitlines() if f" {name} " in l)
        assert "! " not in line, line[:300]
    r = cli("inspect", name, timeout=600)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    r = cli("inspect", "--json", name, timeout=600)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["problem"] is None and len(d["layout"]) == fields
    check_value(d["value"])
    r = cli("watch", "--plain", "--count", "1", name, timeout=600)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stdout.splitlines()) == 1 and r.stdout.startswith("version=")


def _corrupt_copy(src: str, dst: str, patch) -> None:
    with open(f"/dev/shm/{src}", "rb") as f:
        data = bytearray(f.read())
    patch(data)
    with open(f"/dev/shm/{dst}", "wb") as f:
        f.write(data)


def _reported_corrupt(name: str, problem: str) -> None:
    objs = {o["name"]: o for o in json.loads(cli("ls", "--json").stdout)}
    assert problem in (objs[name]["problem"] or ""), objs[name]["problem"]
    r = cli("ls")
    assert r.returncode == 0
    line = next(l for l in r.stdout.splitlines() if f" {name} " in l)
    assert "! " in line and problem in line, line
    for args in (("inspect", name), ("inspect", "--json", name), ("watch", "--count", "1", name)):
        r = cli(*args)
        assert r.returncode == 1 and "Traceback" not in r.stderr, (args, r.stderr)
    assert problem in cli("inspect", name).stderr
    assert os.path.exists(f"/dev/shm/{name}"), "looking removed a corrupt segment"


def test_cli_at_the_field_count_and_field_name_maxima(unique_name):
    names = [f"{i:04d}".ljust(MAX_FIELD_NAME, "f") for i in range(MAX_FIELDS)]
    layout = ss.Layout([(n, "<u2") for n in names])
    assert len(layout) == MAX_FIELDS and max(len(n.encode()) for n in names) == MAX_FIELD_NAME
    with pytest.raises(ValueError):
        ss.SharedState.create(unique_name + "-over", ss.Layout([(f"f{i}", "u1") for i in range(MAX_FIELDS + 1)]))
    with ss.SharedState.create(unique_name, layout) as st:
        st.write(**{names[0]: 1, names[-1]: 4095})

        def check(v):
            assert v[names[0]] == 1 and v[names[-1]] == 4095 and v[names[17]] == 0

        _healthy_everywhere(unique_name, fields=MAX_FIELDS, check_value=check)
        if LINUX:  # the same bytes, corrupted two ways: reported, never crashed on, never removed
            bad1, bad2 = unique_name + "-flip", unique_name + "-count"
            try:
                def flip(b):
                    b[256 + 48 * (MAX_FIELDS - 1) + 3] ^= 0x01  # a name byte of the last field entry

                def too_many(b):
                    struct.pack_into("<I", b, 36, MAX_FIELDS + 1)  # field_count past the maximum

                _corrupt_copy(unique_name, bad1, flip)
                _corrupt_copy(unique_name, bad2, too_many)
                _reported_corrupt(bad1, "checksum mismatch")
                _reported_corrupt(bad2, "field count out of range")
            finally:
                for n in (bad1, bad2):
                    try:
                        os.unlink(f"/dev/shm/{n}")
                    except FileNotFoundError:
                        pass


def test_cli_at_the_name_length_maximum(unique_name):
    name = (unique_name + "-").ljust(MAX_NAME, "n")
    assert len(name.encode()) == MAX_NAME
    with pytest.raises(ValueError):
        ss.SharedState.create(name + "n", ss.CONTROLLER)
    with ss.SharedState.create(name, ss.CONTROLLER) as st:
        st.write(x=12, y=-3)
        _healthy_everywhere(name, fields=5, check_value=lambda v: (v["x"], v["y"]) == (12, -3) or pytest.fail(str(v)))


@pytest.mark.skipif(_mem_available() < 8 << 30, reason="a 1 GiB payload needs 2 GiB of shared memory plus copies")
def test_cli_at_the_payload_maximum(unique_name):
    layout = ss.Layout([("blob", f"V{MAX_PAYLOAD - 8}"), ("tail", "<u8")])
    assert layout.size == MAX_PAYLOAD
    with pytest.raises(ValueError):
        ss.SharedState.create(unique_name + "-over", ss.Layout.opaque(MAX_PAYLOAD + 1))
    with ss.SharedState.create(unique_name, layout) as st:
        st.write(tail=77)

        def check(v):
            assert v["tail"] == 77 and v["blob"] == f"<{MAX_PAYLOAD - 8} bytes>"

        _healthy_everywhere(unique_name, fields=2, check_value=check)


def test_the_cli_holds_no_copy_of_the_format():
    """One source of truth for every byte: the CLI is presentation over _core.Peek; no magic,
    offset, checksum or validation rule of docs/FORMAT.md is written in Python."""
    from sharedstate import _cli
    src = Path(_cli.__file__).read_text()
    for needle in ("SHSTATE1", "SHQUEUE1", "SHFRAME", "2166136261", "16777619", "import struct", "OFF_",
                   "pread", "field count out of range", "checksum", 'open("/proc', "f\"/proc"):
        assert needle not in src, f"_cli.py re-implements the format or the OS look: {needle!r}"
    assert set(ss._core.PEEK_KINDS) >= {"state", "queue"}


def test_peek_describes_without_holding(unique_name):
    with ss.SharedState.create(unique_name, ss.CONTROLLER) as st:
        st.write(x=3)
        with ss._core.Peek(unique_name) as p:
            d = p.describe()
            assert d["kind"] == "state" and d["problem"] is None and d["version"] == 1
            assert len(d["payload"]) == 12 and d["payload"][:4] == (3).to_bytes(4, "little")
            if LINUX:
                assert d["holders_known"] and d["holder_pids"] == [os.getpid()]
            assert p.still_named()
            st.write(x=4)
            assert p.describe(payload=False)["version"] == 2 and "payload" not in p.describe(payload=False)
        with pytest.raises(ValueError, match="closed"):
            p.describe()
    if LINUX:  # the creator closed: the peek held nothing, so the segment went with it
        assert not ss._core.segment_exists(unique_name)
    with pytest.raises(FileNotFoundError):
        ss._core.peek(unique_name)
