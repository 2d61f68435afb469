"""Property test: whatever bytes a segment holds, opening it from Python never crashes.

Hypothesis builds random and mutated segments (a real segment's bytes with header fields
overwritten, bits flipped, the segment cut or extended, the checksum optionally recomputed so
that the mutation reaches the structural checks behind it). Each one is planted under a fresh
name through a raw mapping of our own (tests/_rawseg.py: a /dev/shm file on Linux, a named file
mapping on Windows), then opened, read, written and waited on in a CHILD process, so a crash
shows up as a negative return code (Linux) or the process's exception code (Windows) instead of
killing the test run. The only acceptable outcomes are a working object or one of the clear
exceptions below.

Runs on Linux and on Windows (scripts/test-windows.sh runs it under Wine). On Windows a named
section exists only while somebody holds it, so the planter is always a live holder (Linux draws
"held or not"), and a section cannot be empty (b"" is planted as one zero byte).

Budget: SST_FUZZ_EXAMPLES (default 1000 on Linux, a few seconds; scripts/hardening.sh raises
it). Under Wine the default is 150: every open there costs wineserver round trips (a file
mapping, views, named semaphores), and an example whose magic is 0 makes open() give the
"creator" its 1 s grace, as there always is a holder on Windows; 150 + 75 + 75 examples keep
the file near a minute and still reach every mutation kind.
"""
from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import textwrap
import threading

import pytest

import sharedstate as ss
import _rawseg as raw
from conftest import WINE

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EXAMPLES = int(os.environ.get("SST_FUZZ_EXAMPLES", "150" if WINE else "1000"))
ALLOWED = {"CorruptSegmentError", "WrongKindError", "LayoutMismatchError", "ValueError", "UnicodeDecodeError",
           "OSError", "FileNotFoundError", "PermissionError", "TimeoutError", "FileExistsError"}

# The child: opens each name it is sent and does everything a user would; answers one JSON
# line per name. It survives every allowed exception; anything else is reported by name.
WORKER = textwrap.dedent(r"""
    import json, keyword, sys
    import sharedstate as ss
    def queue(name):
        q = ss.Queue.open(name)
        try:
            q.info()
            got = 0
            for _ in range(6):
                try:
                    m = q.get(timeout=0)
                    assert isinstance(m, bytes) and len(m) <= q.max_message, "message past max_message"
                    got += 1
                except TimeoutError:
                    break
            for _ in range(3):
                try:
                    q.put(b"fuzz", timeout=0)
                except TimeoutError:
                    break
            return {"ok": True, "got": got}
        finally:
            q.close()

    for line in sys.stdin:
        kind, name = line.split()
        try:
            if kind == "queue":
                print(json.dumps(queue(name)), flush=True)
                continue
        except Exception as e:  # noqa: BLE001 - classified by the parent
            print(json.dumps({"ok": False, "type": type(e).__name__, "mro": [c.__name__ for c in type(e).__mro__],
                              "msg": str(e)[:300]}), flush=True)
            continue
        try:
            st = ss.SharedState.open(name)
            try:
                st.lock_timeout = 0.01
                snap = st.read()
                v = st.version
                st.info()
                arr = st.view()
                arr.tobytes()
                buf = bytearray(st.layout.size)
                st.read_into(buf)
                for f in st.layout.names:
                    if f.isidentifier() and not keyword.iskeyword(f):  # others: AttributeError, reported
                        st[f]
                try:
                    st.write(bytes(buf))  # whole payload (names may not be identifiers)
                    # the sequence word is input too: one near 2**64 wraps (a peer can set it anyway)
                    assert st.version > v or v >= 2**62, "write did not advance the version"
                except TimeoutError:
                    pass  # the lock word is input too: a live owner (e.g. pid 1)
                try:
                    st.wait(since=st.version, timeout=0)
                except TimeoutError:
                    pass
                out = {"ok": True, "size": st.layout.size}
            finally:
                st.close()
        except Exception as e:  # noqa: BLE001 - classified by the parent
            out = {"ok": False, "type": type(e).__name__, "mro": [c.__name__ for c in type(e).__mro__],
                   "msg": str(e)[:300]}
        print(json.dumps(out), flush=True)
""")


class Worker:
    def __init__(self):
        # stderr is a pipe too (a Windows python under Wine cannot start with a regular file as
        # a std handle, which pytest's capture would give it); a thread keeps its tail.
        self.p = subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, bufsize=1)
        self.err: list = []
        threading.Thread(target=lambda: self.err.extend(self.p.stderr), daemon=True).start()

    def open(self, name: str, kind: str = "state") -> dict:
        self.p.stdin.write(f"{kind} {name}\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            rc = self.p.wait()
            self.p = None
            return {"crashed": rc, "stderr": "".join(self.err)[-1500:]}
        return json.loads(line)

    def close(self):
        if self.p:
            self.p.stdin.close()
            self.p.wait(timeout=10)


@pytest.fixture(scope="module")
def worker():
    for kind in ("controller", "mixed", "wide", "queue", "queue-wrapped"):
        _valid_bytes(kind)  # made once, before the examples (and the leak check) start
    w = Worker()
    yield w
    w.close()


def _fnv1a(data: bytes, h: int = 2166136261) -> int:
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def _fix_checksum(data: bytearray) -> None:
    """Recompute the header checksum (FORMAT.md) if the field table lies inside the bytes."""
    if len(data) < 64:
        return
    count = struct.unpack_from("<I", data, 36)[0]
    end = 256 + 48 * count
    if count > 4096 or end > len(data):
        return
    pre = bytearray(data[8:64])
    pre[40:44] = b"\0\0\0\0"  # the checksum field (byte 48) as 0
    struct.pack_into("<I", data, 48, _fnv1a(bytes(data[256:end]), _fnv1a(bytes(pre))))


def _fix_queue_checksum(data: bytearray) -> None:
    """A queue's checksum covers bytes 8..63 only (docs/FORMAT.md (Queue segment))."""
    if len(data) >= 64:
        pre = bytearray(data[8:64])
        pre[40:44] = b"\0\0\0\0"
        struct.pack_into("<I", data, 48, _fnv1a(bytes(pre)))


_SEEDS: dict = {}


def _valid_bytes(kind: str) -> bytes:
    """A real segment's bytes, made by the library itself (persistent so that they can be copied)."""
    if kind.startswith("queue") and kind not in _SEEDS:
        # a queue with messages waiting (and, for "queue-wrapped", a ring that has wrapped)
        name = f"sst-fuzzseed-{os.getpid()}-{kind}"
        q = ss.Queue.create(name, capacity=1024, persistent=True)
        for i in range(40 if kind == "queue-wrapped" else 6):
            try:
                q.put(bytes([i]) * (1 + i * 13 % 90), timeout=0)
            except TimeoutError:
                q.get(timeout=0)
            if kind == "queue-wrapped" and i % 2:
                q.get(timeout=0)
        data = bytearray(raw.read_bytes(name, q.info()["segment_size"]))
        data[152:160] = bytes(8)  # no consumer: the fuzzed bytes' own consumer word decides
        _SEEDS[kind] = bytes(data)
        q.unlink()
        q.close()
    if kind not in _SEEDS:
        layouts = {
            "controller": ss.CONTROLLER,
            "mixed": ss.Layout([("t", "<f8"), ("v", "<f4", (4,)), ("id", "<u8"), ("name", "S16"), ("k", "<i2", (3,))]),
            "wide": ss.Layout([(f"f{i}", "<i4") for i in range(40)]),
        }
        name = f"sst-fuzzseed-{os.getpid()}-{kind}"
        with ss.SharedState.create(name, layouts[kind], persistent=True) as s:
            s.write(**{f.name: 1 for f in s.layout.fields if f.count == 1 and f.kind != "S"})
            _SEEDS[kind] = raw.read_bytes(name, s.info()["segment_size"])
            s.unlink()
    return _SEEDS[kind]


# Header fields (offset, struct format) from docs/FORMAT.md, plus the live words.
HEADER_FIELDS = [(0, "<Q"), (8, "<H"), (10, "<H"), (12, "<I"), (16, "<Q"), (24, "<I"), (28, "<I"), (32, "<I"),
                 (36, "<I"), (40, "<I"), (44, "<I"), (48, "<I"), (52, "<I"), (56, "<Q"),
                 (64, "<Q"), (72, "<Q"), (80, "<Q"), (128, "<Q"), (192, "<I")]
# Field table entry i at 256 + 48 i: name[32], offset, count, kind, itemsize, reserved.
ENTRY_FIELDS = [(0, "32s"), (32, "<I"), (36, "<I"), (40, "c"), (41, "B"), (42, "<H"), (44, "<I")]
INTERESTING = [0, 1, 2, 7, 8, 63, 64, 255, 256, 257, 511, 512, 4096, 2**16 - 1, 2**31 - 1, 2**31, 2**32 - 1,
               2**63, 2**64 - 1]


@st.composite
def mutated_segment(draw):
    data = bytearray(_valid_bytes(draw(st.sampled_from(["controller", "mixed", "wide"]))))
    for _ in range(draw(st.integers(1, 4))):
        what = draw(st.sampled_from(["header", "entry", "flip", "bytes", "truncate", "extend"]))
        if what == "header":
            off, fmt = draw(st.sampled_from(HEADER_FIELDS))
            bits = struct.calcsize(fmt) * 8
            value = draw(st.one_of(st.sampled_from(INTERESTING), st.integers(0, 2**bits - 1))) % (2**bits)
            if off + struct.calcsize(fmt) <= len(data):
                struct.pack_into(fmt, data, off, value)
        elif what == "entry":
            i = draw(st.integers(0, 40))
            off, fmt = draw(st.sampled_from(ENTRY_FIELDS))
            pos = 256 + 48 * i + off
            if fmt == "32s":
                value = draw(st.binary(min_size=0, max_size=32))
            elif fmt == "c":
                value = draw(st.sampled_from([b"i", b"u", b"f", b"b", b"S", b"V", b"\0", b"z", b"\xff"]))
            else:
                bits = struct.calcsize(fmt) * 8
                value = draw(st.one_of(st.sampled_from(INTERESTING), st.integers(0, 2**bits - 1))) % (2**bits)
            if pos + struct.calcsize(fmt) <= len(data):
                struct.pack_into(fmt, data, pos, value)
        elif what == "flip" and data:
            pos = draw(st.integers(0, len(data) - 1))
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif what == "bytes" and data:
            pos = draw(st.integers(0, len(data) - 1))
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[pos:pos + len(chunk)] = chunk
        elif what == "truncate":
            data = data[:draw(st.integers(0, len(data)))]
        elif what == "extend":
            data += draw(st.binary(min_size=1, max_size=300))
    if draw(st.booleans()):
        _fix_checksum(data)
    return bytes(data)


def random_segment():
    return st.one_of(
        st.binary(min_size=0, max_size=1200),
        # Random bytes behind a real magic: past the first check.
        st.binary(min_size=0, max_size=1200).map(lambda b: b"SHSTATE1" + b),
        st.binary(min_size=0, max_size=1200).map(lambda b: b"SHQUEUE1" + b),
    )


def _check(worker, name: str, data: bytes, hold: bool, persistent: bool, kind: str = "state") -> dict:
    data = bytearray(data)
    if persistent and len(data) >= 48:  # else open() finds no holder and removes it
        data[44] |= 1
        (_fix_queue_checksum if kind == "queue" else _fix_checksum)(data)
    with raw.plant(name, bytes(data), hold):
        res = worker.open(name, kind)
    if "crashed" in res:
        pytest.fail(f"opening a {len(data)}-byte segment CRASHED the child (return code {res['crashed']}); "
                    f"bytes: {bytes(data[:512]).hex()}; stderr: {res['stderr']}")
    if not res["ok"]:
        assert res["type"] in ALLOWED or set(res["mro"]) & {"OSError", "ValueError"}, res
        assert res["msg"], "an error without a message"
        if res["type"] not in ("TimeoutError",):
            assert name in res["msg"] or "layout" in res["msg"], f"message does not name the object: {res}"
    return res


COUNTS = {"examples": 0, "ok": 0, "errors": {}}


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(data=mutated_segment(), hold=st.booleans(), persistent=st.booleans())
def test_mutated_segments_never_crash(worker, unique_name, data, hold, persistent):
    # magic 0 with a holder is "a creator still writing": open() waits a second for it
    hold = hold and data[:8] != bytes(8) and len(data) >= 256
    res = _check(worker, unique_name, data, hold, persistent)
    name = unique_name
    COUNTS["examples"] += 1
    COUNTS["ok"] += res["ok"]
    if not res["ok"]:
        key = res["type"] + ": " + re.sub(r"\d+", "N", res["msg"].replace(name, "NAME"))[:60]
        COUNTS["errors"][key] = COUNTS["errors"].get(key, 0) + 1


@settings(max_examples=max(EXAMPLES // 2, 20), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(data=random_segment(), persistent=st.booleans())
def test_random_segments_never_crash(worker, unique_name, data, persistent):
    res = _check(worker, unique_name, data, False, persistent)
    name = unique_name
    COUNTS["examples"] += 1
    COUNTS["ok"] += res["ok"]
    if not res["ok"]:
        key = res["type"] + ": " + re.sub(r"\d+", "N", res["msg"].replace(name, "NAME"))[:60]
        COUNTS["errors"][key] = COUNTS["errors"].get(key, 0) + 1


# Queue header (docs/FORMAT.md (Queue segment)) and live words; records start at 320.
QUEUE_FIELDS = [(0, "<Q"), (8, "<H"), (10, "<H"), (12, "<I"), (16, "<Q"), (24, "<Q"), (32, "<I"), (36, "<I"),
                (44, "<I"), (48, "<I"), (64, "<Q"), (72, "<Q"), (80, "<Q"), (128, "<Q"), (136, "<Q"), (152, "<Q"),
                (192, "<I"), (196, "<I"), (256, "<I"), (260, "<I")]
RECORD_FIELDS = [(0, "<I"), (4, "<I"), (8, "<Q")]


@st.composite
def mutated_queue(draw):
    data = bytearray(_valid_bytes(draw(st.sampled_from(["queue", "queue-wrapped"]))))
    for _ in range(draw(st.integers(1, 4))):
        what = draw(st.sampled_from(["header", "record", "record", "flip", "truncate"]))
        if what == "header":
            off, fmt = draw(st.sampled_from(QUEUE_FIELDS))
            bits = struct.calcsize(fmt) * 8
            value = draw(st.one_of(st.sampled_from(INTERESTING), st.integers(0, 2**bits - 1))) % (2**bits)
            if off + struct.calcsize(fmt) <= len(data):
                struct.pack_into(fmt, data, off, value)
        elif what == "record":  # a record header anywhere in the ring, 16-aligned or not
            pos = 320 + draw(st.one_of(st.integers(0, 63).map(lambda k: 16 * k), st.integers(0, 1023)))
            off, fmt = draw(st.sampled_from(RECORD_FIELDS))
            bits = struct.calcsize(fmt) * 8
            value = draw(st.one_of(st.sampled_from(INTERESTING + [0x80000000 | 5, 0x40000000, 0x20000000]),
                                   st.integers(0, 2**bits - 1))) % (2**bits)
            if pos + off + struct.calcsize(fmt) <= len(data):
                struct.pack_into(fmt, data, pos + off, value)
        elif what == "flip" and data:
            pos = draw(st.integers(0, len(data) - 1))
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif what == "truncate":
            data = data[:draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        _fix_queue_checksum(data)
    return bytes(data)


@settings(max_examples=max(EXAMPLES // 2, 20), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(data=mutated_queue(), hold=st.booleans(), persistent=st.booleans())
def test_mutated_queue_segments_never_crash(worker, unique_name, data, hold, persistent):
    hold = hold and data[:8] != bytes(8) and len(data) >= 320
    res = _check(worker, unique_name, data, hold, persistent, kind="queue")
    name = unique_name
    COUNTS["examples"] += 1
    COUNTS["ok"] += res["ok"]
    if not res["ok"]:
        key = res["type"] + ": " + re.sub(r"\d+", "N", res["msg"].replace(name, "NAME"))[:60]
        COUNTS["errors"][key] = COUNTS["errors"].get(key, 0) + 1


def test_fuzz_found_valid_objects_too(worker, unique_name):
    """The fuzz reached past validation: an unmutated segment opens and works in the child."""
    res = _check(worker, unique_name, _valid_bytes("mixed"), True, False)
    assert res["ok"], res
    print(f"\nfuzz: {COUNTS['examples']} segments opened in a child, {COUNTS['ok']} valid objects, 0 crashes")
    for key, n in sorted(COUNTS["errors"].items(), key=lambda kv: -kv[1])[:25]:
        print(f"  {n:6d}  {key}")
