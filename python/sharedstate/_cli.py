"""The command line: ``python -m sharedstate {ls,inspect,watch,rm,cleanup,demo}``.

Looking never changes lifetime. On Linux ``ls``, ``inspect`` and ``watch`` read the
segments under /dev/shm with plain read-only ``pread`` calls: they take no holder lock,
so they neither keep a segment alive nor remove one when they exit, and they never map
the bytes (a foreign process shrinking a file cannot crash them). Holders are found in
/proc/locks (every holder keeps a shared flock). The value shown is read with the
segment's own seqlock protocol (sequence, stable copy, sequence again), so it is never
torn. Header bytes are untrusted: anything that fails validation is reported, not used.

On Windows named objects cannot be listed; ``inspect`` and ``watch`` open the object
(and so hold it while they run, which is how Windows lifetime works anyway).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import struct
import sys
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, TextIO, Tuple

from . import _core

SHM_DIR = "/dev/shm"
LINUX = sys.platform.startswith("linux")

# ---------------------------------------------------------------- the format (docs/FORMAT.md)
# Mirrors cpp/include/sharedstate/format.hpp; little-endian only.
MAGIC_STATE = b"SHSTATE1"
MAGIC_QUEUE = b"SHQUEUE1"
MAGIC_FRAMES = b"SHFRAME1"  # docs/FORMAT.md (Frames segment), cpp/include/sharedstate/frames_format.hpp
KIND_STATE, KIND_QUEUE = 1, 2
FLAG_PERSISTENT = 1
PREAMBLE = struct.Struct("<8sHHIQIIIIIIIIQ")  # 64 bytes: magic .. created_unix_ns
FIELD = struct.Struct("<32sIIcBHI")            # 48 bytes per field table entry
OFF_LOCK, OFF_LAST_WRITER, OFF_RECOVERIES = 64, 72, 80
OFF_SEQ, OFF_WAITERS, OFF_FIELDS = 128, 192, 256
MAX_FIELDS, MAX_PAYLOAD = 256, 1 << 30
assert PREAMBLE.size == 64 and FIELD.size == 48

_PY_FMT = {("i", 1): "b", ("i", 2): "h", ("i", 4): "i", ("i", 8): "q",
           ("u", 1): "B", ("u", 2): "H", ("u", 4): "I", ("u", 8): "Q",
           ("f", 4): "f", ("f", 8): "d", ("b", 1): "?"}


class Problem(Exception):
    """A segment whose bytes fail validation (reported, never used)."""


class Gone(Exception):
    """The object being watched was removed (its last holder closed it)."""


def _fnv1a(data: bytes, h: int = 2166136261) -> int:
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


class Peek:
    """Read-only, lock-free, map-free access to one /dev/shm entry (Linux)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = os.path.join(SHM_DIR, name)
        self.fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            st = os.fstat(self.fd)
        except OSError:
            os.close(self.fd)
            raise
        self.size = st.st_size
        self.uid = st.st_uid
        self.mode = st.st_mode & 0o7777
        self.dev_ino = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "Peek":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def pread(self, n: int, off: int) -> bytes:
        data = os.pread(self.fd, n, off)
        if len(data) != n:
            raise Problem(f"truncated: {self.size} bytes, wanted {n} at offset {off}")
        return data

    def u64(self, off: int) -> int:
        return int(struct.unpack("<Q", self.pread(8, off))[0])

    def u32(self, off: int) -> int:
        return int(struct.unpack("<I", self.pread(4, off))[0])

    def magic(self) -> bytes:
        return os.pread(self.fd, 8, 0) if self.size >= 8 else b""

    def kind(self) -> str:
        m = self.magic()
        return ("state" if m == MAGIC_STATE else "queue" if m == MAGIC_QUEUE else
                "frames" if m == MAGIC_FRAMES else "other")

    # ---- the state header, validated like format::validate_state
    def preamble(self) -> Dict[str, Any]:
        if self.size < 64:
            raise Problem(f"truncated ({self.size} bytes)")
        (magic, version, kind, header_size, segment_size, payload_size, payload_align, slot_stride,
         field_count, fields_offset, flags, checksum, creator_pid, created_ns) = PREAMBLE.unpack(self.pread(64, 0))
        return dict(magic=magic, format_version=version, kind_code=kind, header_size=header_size,
                    segment_size=segment_size, payload_size=payload_size, payload_align=payload_align,
                    slot_stride=slot_stride, field_count=field_count, fields_offset=fields_offset,
                    flags=flags, checksum=checksum, creator_pid=creator_pid, created_unix_ns=created_ns)

    def state_header(self) -> Dict[str, Any]:
        p = self.preamble()
        if p["magic"] != MAGIC_STATE:
            raise Problem("not a sharedstate state segment (bad magic)")
        if p["format_version"] != 1:
            raise Problem(f"format version {p['format_version']}, this tool reads 1")
        if p["kind_code"] != KIND_STATE:
            raise Problem(f"kind {p['kind_code']} is not a state")
        if p["fields_offset"] != OFF_FIELDS:
            raise Problem("field table offset is not 256")
        n = p["field_count"]
        if not 0 < n <= MAX_FIELDS:
            raise Problem("field count out of range")
        table_end = OFF_FIELDS + 48 * n
        if p["header_size"] % 64 or p["header_size"] < table_end:
            raise Problem("header size inconsistent")
        if not 0 < p["payload_size"] <= MAX_PAYLOAD:
            raise Problem("payload size out of range")
        if p["slot_stride"] % 64 or p["slot_stride"] < p["payload_size"]:
            raise Problem("slot stride inconsistent")
        need = p["header_size"] + 2 * p["slot_stride"]
        if p["segment_size"] != need:
            raise Problem("segment size field inconsistent")
        if need > self.size:
            raise Problem(f"truncated ({self.size} bytes, needs {need})")
        pre = bytearray(self.pread(56, 8))
        pre[40:44] = b"\0\0\0\0"  # the checksum field itself (offset 48) counts as 0
        table = self.pread(48 * n, OFF_FIELDS)
        if _fnv1a(table, _fnv1a(bytes(pre))) != p["checksum"]:
            raise Problem("header checksum mismatch")
        fields = []
        for i in range(n):
            raw_name, offset, count, kind, itemsize, _r0, _r1 = FIELD.unpack_from(table, 48 * i)
            name = raw_name.split(b"\0", 1)[0].decode("utf-8", "replace")
            k = kind.decode("latin-1")
            if not name:
                raise Problem(f"field {i} has no name")
            if k not in "iufbSV" or count == 0 or offset + itemsize * count > p["payload_size"]:
                raise Problem(f"field {name!r} is out of range")
            if k in "iufb" and (k, itemsize) not in _PY_FMT:
                raise Problem(f"field {name!r}: bad item size {itemsize}")
            fields.append(dict(name=name, kind=k, itemsize=itemsize, offset=offset, count=count))
        p["fields"] = fields
        p["persistent"] = bool(p["flags"] & FLAG_PERSISTENT)
        return p

    # ---- the queue header (cpp/include/sharedstate/queue.hpp, docs/FORMAT.md (Queue segment))
    def queue_facts(self) -> Dict[str, Any]:
        p = self.preamble()
        if p["format_version"] != 1 or p["kind_code"] != KIND_QUEUE or p["header_size"] != 320:
            raise Problem("queue header: version, kind or header size is wrong")
        capacity, max_message, record_align = struct.unpack("<QII", self.pread(16, 24))
        if capacity < 256 or capacity > (1 << 30) or capacity & (capacity - 1):
            raise Problem(f"queue capacity {capacity} is not a power of two in 256..2^30")
        if p["segment_size"] != 320 + capacity:
            raise Problem("segment size field inconsistent")
        if p["segment_size"] > self.size:
            raise Problem(f"truncated ({self.size} bytes, needs {p['segment_size']})")
        pre = bytearray(self.pread(56, 8))
        pre[40:44] = b"\0\0\0\0"
        if _fnv1a(bytes(pre)) != p["checksum"]:
            raise Problem("header checksum mismatch")
        tail, puts, recoveries = self.u64(72), self.u64(80), self.u64(88)
        head, gets, skipped, consumer = self.u64(128), self.u64(136), self.u64(144), self.u64(152)
        return dict(header_size=320, segment_size=p["segment_size"], capacity=capacity, max_message=max_message,
                    pending=max(0, puts - gets), used_bytes=max(0, tail - head), puts=puts, gets=gets,
                    skipped=skipped, recoveries=recoveries,
                    consumer=None if consumer == 0 else {"pid": consumer >> 32, "alive": owner_alive(consumer)})

    # ---- the frames header (cpp/include/sharedstate/frames_format.hpp, docs/FORMAT.md (Frames segment))
    def frames_facts(self) -> Dict[str, Any]:
        p = self.preamble()
        if p["format_version"] != 1 or p["kind_code"] != 3 or p["fields_offset"] != 320:
            raise Problem("frames header: version, kind or field table offset is wrong")
        n = p["field_count"]
        slots, readers, ndim, item_size, pins_off = struct.unpack("<IIIII", self.pread(20, 64))
        if not (0 < n <= 4096 and 0 < readers <= 1024 and slots == readers + 2 and ndim <= 8):
            raise Problem("frames geometry out of range")
        if p["segment_size"] > self.size:
            raise Problem(f"truncated ({self.size} bytes, needs {p['segment_size']})")
        imm = bytearray(self.pread(120, 8))
        imm[40:44] = b"\0\0\0\0"
        if _fnv1a(self.pread(48 * n, 320), _fnv1a(bytes(imm))) != p["checksum"]:
            raise Problem("header checksum mismatch")
        shape = list(struct.unpack("<8I", self.pread(32, 88))[:ndim])
        fields = []
        for i in range(n):
            raw_name, offset, count, kind, itemsize, _r0, _r1 = FIELD.unpack_from(self.pread(48, 320 + 48 * i))
            fields.append(dict(name=raw_name.rstrip(b"\0").decode("utf-8", "replace"), kind=kind.decode("latin-1"),
                               itemsize=itemsize, offset=offset, count=count))
        f0 = fields[0]
        element = (f"{f0['kind']}{f0['count'] if f0['kind'] in 'SV' else f0['itemsize']}" if p["flags"] & 2
                   else layout_text(fields))
        pins = 0
        if pins_off + 16 * readers <= self.size:
            for i in range(readers):
                pins += self.u32(pins_off + 16 * i + 8) < slots
        lo, lw = self.u64(128), self.u64(136)
        return dict(header_size=p["header_size"], segment_size=p["segment_size"], shape=shape, element=element,
                    frame_bytes=p["payload_size"], readers=readers, slots=slots, pins_held=pins,
                    version=self.u64(192) >> 16, recoveries=self.u64(144), reclaimed=self.u64(152),
                    waiters=self.u32(256), persistent=bool(p["flags"] & FLAG_PERSISTENT),
                    writer_lock=None if lo == 0 else {"pid": lo >> 32, "alive": owner_alive(lo)},
                    last_writer=None if lw == 0 else {"pid": lw >> 32, "alive": owner_alive(lw)})

    def live(self) -> Dict[str, int]:
        return dict(seq=self.u64(OFF_SEQ), lock_owner=self.u64(OFF_LOCK), last_writer=self.u64(OFF_LAST_WRITER),
                    recoveries=self.u64(OFF_RECOVERIES), waiters=self.u32(OFF_WAITERS))

    def read_payload(self, h: Dict[str, Any], tries: int = 1000) -> Tuple[int, bytes]:
        """(version, payload): the seqlock read: seq, the stable copy, seq again."""
        size, stride, base = h["payload_size"], h["slot_stride"], h["header_size"]
        for _ in range(tries):
            s1 = self.u64(OFF_SEQ)
            data = self.pread(size, base + (s1 & 1) * stride)
            if self.u64(OFF_SEQ) == s1:
                return s1 >> 1, data
        raise Problem(f"no consistent read in {tries} tries (a writer storming it?)")


def decode_fields(fields: Sequence[Dict[str, Any]], payload: bytes) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for f in fields:
        k, size, off, count = f["kind"], f["itemsize"], f["offset"], f["count"]
        if k == "S":
            out[f["name"]] = payload[off:off + count].split(b"\0", 1)[0]
        elif k == "V":
            out[f["name"]] = payload[off:off + count]
        else:
            vals = struct.unpack_from(f"<{count}{_PY_FMT[(k, size)]}", payload, off)
            out[f["name"]] = vals[0] if count == 1 else list(vals)
    return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            return v.hex()
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    return v


def layout_text(fields: Sequence[Dict[str, Any]]) -> str:
    def one(f: Dict[str, Any]) -> str:
        k = f["kind"]
        t = "bool" if k == "b" else (f"{k}{f['count']}" if k in "SV" else f"{k}{f['itemsize']}")
        if f["count"] > 1 and k not in "SV":
            t += f"[{f['count']}]"
        return f"{f['name']}:{t}"
    return " ".join(one(f) for f in fields)


# ---------------------------------------------------------------- processes and holders
def _start_time(pid: int) -> Optional[Tuple[str, int]]:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read().decode("latin-1")
    except OSError:
        return None
    rest = text[text.rfind(")") + 2:].split()
    try:
        return rest[0], int(rest[19])
    except (IndexError, ValueError):
        return None


def owner_alive(word: int) -> bool:
    """Same rule as the C++ owner_alive: pid alive, not a zombie, same start-time token."""
    pid, token = word >> 32, word & 0xFFFFFFFF
    if pid <= 0:
        return False
    st = _start_time(pid)
    if st is None:
        return False
    state, start = st
    return state not in ("Z", "X") and ((start & 0xFFFFFFFF) or 1) == token


def flock_holders(dev_ino: Tuple[int, int, int]) -> Optional[List[int]]:
    """Pids holding a flock on the file (from /proc/locks), or None if unreadable."""
    want = f"{dev_ino[0]:02x}:{dev_ino[1]:02x}:{dev_ino[2]}"
    try:
        with open("/proc/locks") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    pids: List[int] = []
    for line in lines:
        parts = line.split()
        if "->" in parts or len(parts) < 6 or parts[1] != "FLOCK":
            continue
        if parts[5] == want:
            try:
                pids.append(int(parts[4]))
            except ValueError:
                pass
    return sorted(set(pids))


def _holders(p: Peek) -> Tuple[bool, List[int]]:
    pids = flock_holders(p.dev_ino)
    if pids is None:  # no /proc/locks: ask with a probe (a brief non-blocking lock attempt)
        return bool(_core.segment_held(p.name)), []
    return bool(pids), pids


# ---------------------------------------------------------------- describing one object
def describe(name: str, *, value: bool = True) -> Dict[str, Any]:
    """Everything ls/inspect show about /dev/shm/NAME. Raises FileNotFoundError."""
    with Peek(name) as p:
        kind = p.kind()
        d: Dict[str, Any] = {"kind": kind, "name": name, "size": p.size, "mode": oct(p.mode), "problem": None}
        held, pids = _holders(p)
        d["holders_alive"] = held
        d["holder_pids"] = pids
        if kind == "other":
            d["first_bytes"] = os.pread(p.fd, 32, 0).hex()
            return d
        try:
            pre = p.preamble()
        except Problem as e:
            d["problem"] = str(e)
            return d
        d["format_version"] = pre["format_version"]
        d["persistent"] = bool(pre["flags"] & FLAG_PERSISTENT)
        d["creator_pid"] = pre["creator_pid"]
        d["created"] = _iso(pre["created_unix_ns"])
        if kind == "queue":
            try:
                d.update(p.queue_facts())
            except Problem as e:
                d["problem"] = str(e)
            return d
        if kind == "frames":
            try:
                d.update(p.frames_facts())
            except Problem as e:
                d["problem"] = str(e)
            return d
        try:
            h = p.state_header()
            live = p.live()
        except Problem as e:
            d["problem"] = str(e)
            return d
        d.update(payload_size=h["payload_size"], payload_align=h["payload_align"], header_size=h["header_size"],
                 slot_stride=h["slot_stride"], segment_size=h["segment_size"], layout=h["fields"],
                 version=live["seq"] >> 1)
        lo, lw = live["lock_owner"], live["last_writer"]
        d["writer_lock"] = None if lo == 0 else {"pid": lo >> 32, "alive": owner_alive(lo)}
        d["last_writer"] = None if lw == 0 else {"pid": lw >> 32, "alive": owner_alive(lw)}
        d["recoveries"] = live["recoveries"]
        d["waiters"] = live["waiters"]
        if value:
            try:
                d["version"], payload = p.read_payload(h)
                d["value"] = decode_fields(h["fields"], payload)
            except Problem as e:
                d["problem"] = str(e)
        return d


def _iso(ns: int) -> Optional[str]:
    try:
        return _dt.datetime.fromtimestamp(ns / 1e9, _dt.timezone.utc).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return None


def _describe_opened(name: str) -> Dict[str, Any]:
    """Windows (no /dev/shm): open the object, as its holder for the moment."""
    from ._state import SharedState
    try:
        st = SharedState.open(name)
    except _core.WrongKindError:
        return _describe_opened_queue(name)
    with st:
        info = st.info()
        snap = st.read()
        fields = [f._asdict() for f in st.layout.fields]
        d: Dict[str, Any] = {"kind": "state", "name": name, "size": info.get("segment_size"), "problem": None,
                             "holders_alive": True, "holder_pids": [], "layout": fields,
                             "payload_size": st.layout.size, "version": info.get("version"),
                             "persistent": info.get("persistent"), "creator_pid": info.get("creator_pid"),
                             "created": _iso(int(info.get("created_unix_ns") or 0)),
                             "writer_lock": None if info.get("lock_owner_pid") is None else {"pid": info["lock_owner_pid"]},
                             "last_writer": None if info.get("last_writer_pid") is None else {"pid": info["last_writer_pid"]},
                             "recoveries": info.get("recoveries"), "waiters": info.get("waiters"),
                             "value": dict(zip(st.layout.names, snap))}
        return d


def _describe_opened_queue(name: str) -> Dict[str, Any]:
    from ._queue import Queue
    with Queue.open(name) as q:
        i = q.info()
        return {"kind": "queue", "name": name, "size": i.get("segment_size"), "problem": None,
                "holders_alive": True, "holder_pids": [], "persistent": i.get("persistent"),
                "creator_pid": i.get("creator_pid"), "created": _iso(int(i.get("created_unix_ns") or 0)),
                "capacity": i.get("capacity"), "max_message": i.get("max_message"), "pending": i.get("count"),
                "used_bytes": i.get("used_bytes"), "skipped": i.get("skipped"), "recoveries": i.get("recoveries"),
                "consumer": None if i.get("consumer_pid") is None else {"pid": i["consumer_pid"]}}


def _file_holders(path: str) -> Tuple[bool, List[int]]:
    st = os.stat(path)
    pids = flock_holders((os.major(st.st_dev), os.minor(st.st_dev), st.st_ino))
    return bool(pids), pids or []


def socket_dir() -> str:
    """Where Linux pipes live (cpp/include/sharedstate/detail/posix_channels.hpp, socket_dir)."""
    x = os.environ.get("XDG_RUNTIME_DIR", "")
    if x.startswith("/"):
        try:
            st = os.lstat(x)
            import stat as _stat
            if _stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077:
                return os.path.join(x, "sharedstate")
        except OSError:
            pass
    return f"/tmp/sharedstate-{os.geteuid()}"


def describe_semaphore(name: str) -> Dict[str, Any]:
    """A named semaphore: glibc keeps it in /dev/shm/sem.NAME; holders keep a shared flock on it."""
    path = os.path.join(SHM_DIR, "sem." + name)
    st = os.stat(path)  # FileNotFoundError if missing
    held, pids = _file_holders(path)
    return {"kind": "semaphore", "name": name, "size": st.st_size, "mode": oct(st.st_mode & 0o7777),
            "problem": None, "holders_alive": held, "holder_pids": pids}


def describe_pipe(name: str) -> Dict[str, Any]:
    """A pipe server's socket; the server holds an exclusive flock on NAME.lock while it listens."""
    d = socket_dir()
    sock, lock = os.path.join(d, name + ".sock"), os.path.join(d, name + ".lock")
    st = os.lstat(sock)  # FileNotFoundError if missing
    try:
        held, pids = _file_holders(lock)
    except OSError:
        held, pids = False, []
    return {"kind": "pipe", "name": name, "size": None, "mode": oct(st.st_mode & 0o7777), "path": sock,
            "problem": None if held else "no server listening (left by a server that died; the next PipeServer replaces it)",
            "holders_alive": held, "holder_pids": pids}


def describe_any(name: str) -> Dict[str, Any]:
    """The segment NAME, else the semaphore NAME, else the pipe NAME (FileNotFoundError if none)."""
    for how in (describe, describe_semaphore, describe_pipe, describe_mailslot):
        try:
            return how(name)
        except FileNotFoundError:
            continue
    raise FileNotFoundError(name)


MAILSLOT_SUFFIX = ".mailslot"  # Linux: a mailslot is a queue segment NAME.mailslot (mailslot.hpp)


def describe_mailslot(name: str) -> Dict[str, Any]:
    return _as_mailslot(describe(name + MAILSLOT_SUFFIX))


def _as_mailslot(d: Dict[str, Any]) -> Dict[str, Any]:
    if d["kind"] == "queue" and d["name"].endswith(MAILSLOT_SUFFIX):
        d = dict(d, kind="mailslot", name=d["name"][:-len(MAILSLOT_SUFFIX)])
    return d


def list_objects(include_other: bool = False) -> List[Dict[str, Any]]:
    """Every sharedstate object of this user: segments and semaphores in /dev/shm, pipes in
    the per-user socket directory."""
    out: List[Dict[str, Any]] = []
    uid = os.getuid()
    for entry in sorted(os.listdir(SHM_DIR)):
        path = os.path.join(SHM_DIR, entry)
        try:
            st = os.lstat(path)
            if st.st_uid != uid or not os.path.isfile(path):
                continue
            d = describe_semaphore(entry[4:]) if entry.startswith("sem.") else _as_mailslot(describe(entry, value=False))
        except OSError:  # gone meanwhile, or not readable: not ours to show
            continue
        if d["kind"] == "other" and not include_other:
            continue
        out.append(d)
    try:
        socks = sorted(e for e in os.listdir(socket_dir()) if e.endswith(".sock"))
    except OSError:
        socks = []
    for entry in socks:
        try:
            out.append(describe_pipe(entry[:-5]))
        except OSError:
            continue
    return out


# ---------------------------------------------------------------- commands
def _err(msg: str) -> None:
    print(f"sharedstate: {msg}", file=sys.stderr)


def _check_name(name: str) -> Optional[int]:
    if not name or "/" in name or "\\" in name or "\0" in name or name in (".", ".."):
        _err(f"bad name {name!r} (no '/', '\\' or NUL; not empty)")
        return 2
    return None


def cmd_ls(args: argparse.Namespace) -> int:
    if not LINUX:
        _err("ls needs /dev/shm (Linux); Windows cannot list named objects: use 'inspect NAME'")
        return 1
    objs = list_objects(include_other=args.all)
    if args.json:
        print(json.dumps(_jsonable(objs), indent=2))
        return 0
    if not objs:
        print("no sharedstate objects")
        return 0
    rows = [("KIND", "NAME", "SIZE", "HOLDERS", "VERSION", "LAYOUT")]
    for d in objs:
        if d.get("problem"):
            layout = "! " + d["problem"]
        elif d["kind"] == "state":
            layout = layout_text(d["layout"]) + (" (persistent)" if d.get("persistent") else "")
        elif d["kind"] in ("queue", "mailslot") and "capacity" in d:
            layout = (f"capacity {d['capacity']}, max message {d['max_message']}, {d['pending']} pending"
                      + (" (persistent)" if d.get("persistent") else ""))
        elif d["kind"] == "frames" and "shape" in d:
            layout = (f"frames {tuple(d['shape'])} {d['element']}, {d['readers']} readers, {d['pins_held']} pinned"
                      + (" (persistent)" if d.get("persistent") else ""))
        elif d["kind"] in ("pipe", "semaphore"):
            layout = "-"
        else:
            layout = "(no sharedstate header)"
        holders = "yes" if d["holders_alive"] else "no"
        if d["holder_pids"]:
            holders += " " + ",".join(map(str, d["holder_pids"][:4])) + ("..." if len(d["holder_pids"]) > 4 else "")
        ver = str(d.get("version", "-")) if d.get("version") is not None else "-"
        rows.append((d["kind"], d["name"], "-" if d["size"] is None else str(d["size"]), holders, ver, layout))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5])
    return 0


def _lookup(name: str) -> Dict[str, Any]:
    return describe_any(name) if LINUX else _describe_opened(name)


def cmd_inspect(args: argparse.Namespace) -> int:
    bad = _check_name(args.name)
    if bad:
        return bad
    try:
        d = _lookup(args.name)
    except FileNotFoundError:
        _err(f"no object named {args.name!r}")
        return 1
    except PermissionError as e:
        _err(f"{args.name!r}: permission denied ({e.strerror})")
        return 1
    except (ValueError, OSError) as e:
        _err(f"{args.name!r}: {e}")
        return 1
    if args.json:
        print(json.dumps(_jsonable(d), indent=2))
        return 1 if d.get("problem") else 0
    out = sys.stdout
    print(f"{d['name']}: {d['kind']}" + (" (no sharedstate header: a legacy or foreign mapping)" if d["kind"] == "other" else ""), file=out)
    if d["size"] is not None:
        print(f"  size            {d['size']} bytes" + (f", mode {d['mode']}" if "mode" in d else ""), file=out)
    holders = "yes" if d["holders_alive"] else "no (stale unless persistent: 'cleanup' removes it)"
    if d["holder_pids"]:
        holders += f" (pids {', '.join(map(str, d['holder_pids']))})"
    print(f"  holders alive   {holders}", file=out)
    if d["kind"] in ("pipe", "semaphore"):
        if d.get("path"):
            print(f"  path            {d['path']}", file=out)
        if d.get("problem"):
            _err(f"{d['name']!r}: {d['problem']}")
            return 1
        return 0
    if d["kind"] == "other":
        print(f"  first bytes     {d.get('first_bytes', '')}", file=out)
        print("  (attach with SharedState.attach_raw(name, layout))", file=out)
        return 0
    for key, label in (("format_version", "format"), ("persistent", "persistent"), ("creator_pid", "creator pid"),
                       ("created", "created"), ("header_size", "header size"), ("payload_size", "payload size"),
                       ("payload_align", "payload align"), ("slot_stride", "slot stride"),
                       ("segment_size", "segment size"), ("version", "version"), ("capacity", "capacity"),
                       ("max_message", "max message"), ("pending", "pending"), ("used_bytes", "used bytes"),
                       ("puts", "puts"), ("gets", "gets"), ("skipped", "skipped"), ("recoveries", "recoveries"),
                       ("waiters", "waiters"), ("shape", "shape"), ("element", "element"),
                       ("frame_bytes", "frame bytes"), ("readers", "readers"), ("slots", "slots"),
                       ("pins_held", "pins held"), ("reclaimed", "reclaimed")):
        if key in d and d[key] is not None:
            print(f"  {label:<15} {d[key]}", file=out)
    if d["kind"] in ("queue", "mailslot") and "capacity" in d:
        print(f"  consumer        {_owner_text(d.get('consumer'), 'none')}", file=out)
    if d["kind"] == "frames" and "shape" in d:
        print(f"  writer lock     {_owner_text(d.get('writer_lock'), 'free')}", file=out)
        print(f"  last writer     {_owner_text(d.get('last_writer'), 'none yet')}", file=out)
    if d["kind"] == "state" and "layout" in d:
        wl, lw = d.get("writer_lock"), d.get("last_writer")
        print(f"  writer lock     {_owner_text(wl, 'free')}", file=out)
        print(f"  last writer     {_owner_text(lw, 'none yet')}", file=out)
        print("  layout", file=out)
        value = d.get("value") or {}
        for f in d["layout"]:
            t = layout_text([f]).split(":", 1)[1]
            v = value.get(f["name"], "")
            print(f"    {f['name']:<20} {t:<10} @{f['offset']:<5} = {v!r}", file=out)
    if d.get("problem"):
        _err(f"{d['name']!r}: {d['problem']}")
        return 1
    return 0


def _owner_text(o: Optional[Dict[str, Any]], none: str) -> str:
    if o is None:
        return none
    alive = o.get("alive")
    return f"pid {o['pid']}" + ("" if alive is None else " (alive)" if alive else " (dead: the next writer takes over)")


def _watch_frames(name: str, interval: float) -> Iterator[Tuple[int, Dict[str, Any], List[Dict[str, Any]]]]:
    """Yields (version, values, fields) every `interval` seconds."""
    if LINUX:
        with Peek(name) as p:
            if p.kind() == "queue":
                raise Problem("is a queue; watch shows a state's fields (try 'inspect')")
            h = p.state_header()
            while True:
                v, payload = p.read_payload(h)
                yield v, decode_fields(h["fields"], payload), h["fields"]
                time.sleep(interval)
                try:  # still the object we are showing? (its last holder may have removed it)
                    now = os.stat(p.path)
                    same = (os.major(now.st_dev), os.minor(now.st_dev), now.st_ino) == p.dev_ino
                except FileNotFoundError:
                    same = False
                if not same:
                    raise Gone(name)
    else:
        from ._state import SharedState
        with SharedState.open(name) as st:
            fields = [f._asdict() for f in st.layout.fields]
            while True:
                snap = st.read()
                yield st.version, dict(zip(st.layout.names, snap)), fields
                try:
                    st.wait(timeout=interval)
                except TimeoutError:
                    pass


def cmd_watch(args: argparse.Namespace) -> int:
    bad = _check_name(args.name)
    if bad:
        return bad
    if args.interval <= 0:
        _err("--interval must be > 0")
        return 2
    out: TextIO = sys.stdout
    tty = out.isatty() and not args.plain
    drawn = 0
    frames = 0
    try:
        t0 = time.monotonic()
        v_prev: Optional[int] = None
        t_prev = t0
        for v, values, fields in _watch_frames(args.name, args.interval):
            now = time.monotonic()
            rate = 0.0 if v_prev is None else (v - v_prev) / max(now - t_prev, 1e-9)
            v_prev, t_prev = v, now
            lines = [f"{args.name}  version {v}  {rate:,.0f} updates/s  (Ctrl-C to quit)"]
            lines += [f"  {f['name']:<20} {values[f['name']]!r}" for f in fields]
            if tty:
                if drawn:
                    out.write(f"\x1b[{drawn}F")  # back to the first line drawn, then overwrite
                out.write("".join(line + "\x1b[K\n" for line in lines))
                out.write("\x1b[J")
                drawn = len(lines)
            else:
                out.write(" ".join([f"version={v}", f"rate={rate:.0f}/s"] +
                                   [f"{f['name']}={values[f['name']]!r}" for f in fields]) + "\n")
            out.flush()
            frames += 1
            if args.count and frames >= args.count:
                break
    except KeyboardInterrupt:
        out.write("\n" if tty else "")
        out.flush()
        return 0
    except Gone:
        out.flush()
        _err(f"{args.name!r} is gone: its last holder closed it (or it was removed)")
        return 0
    except FileNotFoundError:
        _err(f"no object named {args.name!r}")
        return 1
    except Problem as e:
        _err(f"{args.name!r}: {e}")
        return 1
    except (ValueError, OSError) as e:
        _err(f"{args.name!r}: {e}")
        return 1
    return 0


def _remove(d: Dict[str, Any]) -> None:
    name = d["name"]
    if d["kind"] == "semaphore":
        os.unlink(os.path.join(SHM_DIR, "sem." + name))  # what sem_unlink does on glibc
    elif d["kind"] == "pipe":
        base = os.path.join(socket_dir(), name)
        for ext in (".sock", ".lock"):
            try:
                os.unlink(base + ext)
            except FileNotFoundError:
                pass
    elif d["kind"] == "mailslot":
        _core.state_unlink(name + MAILSLOT_SUFFIX)
    else:
        _core.state_unlink(name)


def cmd_rm(args: argparse.Namespace) -> int:
    status = 0
    for name in args.names:
        bad = _check_name(name)
        if bad:
            status = max(status, bad)
            continue
        if sys.platform == "win32":
            # Windows has no unlink: a named object goes with its last handle.
            if _core.segment_exists(name):
                _err(f"rm: {name!r} is open in some process; Windows removes it when the last handle closes")
                status = max(status, 1)
            elif not args.force:
                _err(f"rm: no object named {name!r}")
                status = max(status, 1)
            continue
        try:
            if LINUX:
                d = describe_any(name)
            elif _core.segment_exists(name):
                d = {"kind": "state", "name": name, "holders_alive": bool(_core.segment_held(name)), "holder_pids": []}
            else:
                raise FileNotFoundError(name)
        except FileNotFoundError:
            if not args.force:
                _err(f"rm: no object named {name!r}")
                status = max(status, 1)
            continue
        except OSError as e:
            _err(f"rm {name!r}: {e}")
            status = max(status, 1)
            continue
        if d["holders_alive"] and not args.force:
            pids = d["holder_pids"]
            who = f" by pids {', '.join(map(str, pids))}" if pids else ""
            _err(f"rm: {d['kind']} {name!r} is in use{who}; they would keep it open but nobody could open it "
                 f"again. Use -f to remove it anyway.")
            status = max(status, 1)
            continue
        try:
            _remove(d)
        except FileNotFoundError:
            pass
        except OSError as e:
            _err(f"rm {name!r}: {e}")
            status = max(status, 1)
            continue
        if args.verbose:
            print(f"removed {d['kind']} {name}")
    return status


def cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run, run_frames
    if args.frames:
        return run_frames(seconds=args.seconds, rate=60.0 if args.rate is None else args.rate, name=args.name)
    return run(seconds=args.seconds, rate=1000.0 if args.rate is None else args.rate, name=args.name)


def cmd_cleanup(args: argparse.Namespace) -> int:
    """Remove sharedstate segments whose holders have all exited (Linux; Windows does it itself)."""
    if sys.platform == "win32":
        print("cleanup: nothing to do on Windows (a segment goes with its last handle)")
        return 0
    removed = 0
    for entry in sorted(os.listdir("/dev/shm")):
        if entry.startswith("sem."):
            continue
        try:
            if _core.state_remove_if_stale(entry):
                removed += 1
                print(f"removed {entry}")
        except (OSError, ValueError):
            continue
    print(f"cleanup: {removed} stale segment(s) removed")
    return 0


LOOKING = ("Looking never changes lifetime: on Linux ls/inspect/watch read /dev/shm with plain "
           "read-only reads and take no holder lock, so they neither keep a segment alive nor "
           "remove it when they exit. (On Windows inspect/watch hold the object while they run.)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sharedstate",
        description="sharedstate: shared state and messages between C++ and Python.",
        epilog=LOOKING + " Exit status: 0 ok, 1 missing/invalid object, 2 bad usage.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ls = sub.add_parser("ls", help="list this user's sharedstate objects (kind, name, size, holders, version, layout)",
                        description="List this user's sharedstate objects in /dev/shm. HOLDERS says whether any "
                                    "process still holds the object (with their pids, from /proc/locks); an object "
                                    "with no holder is stale unless persistent. " + LOOKING)
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.add_argument("-a", "--all", action="store_true", help="also list this user's other /dev/shm entries (e.g. legacy raw mappings)")
    ls.set_defaults(func=cmd_ls)
    ins = sub.add_parser("inspect", help="header, layout, current value and writer of one object",
                         description="Show one object's header, layout, current (consistent) value, writer lock "
                                     "owner and last writer. " + LOOKING)
    ins.add_argument("name")
    ins.add_argument("--json", action="store_true", help="machine-readable output")
    ins.set_defaults(func=cmd_inspect)
    w = sub.add_parser("watch", help="live view of a state's fields and update rate (Ctrl-C quits)",
                       description="Redraw a state's fields in place with its update rate. Ctrl-C exits with "
                                   "status 0. " + LOOKING)
    w.add_argument("name")
    w.add_argument("-n", "--interval", type=float, default=0.1, help="seconds between redraws (default 0.1)")
    w.add_argument("-c", "--count", type=int, default=0, help="stop after this many redraws (default: run until Ctrl-C)")
    w.add_argument("--plain", action="store_true", help="one line per redraw, no terminal control codes")
    w.set_defaults(func=cmd_watch)
    rm = sub.add_parser("rm", help="remove objects by name",
                        description="Remove the names (segments, semaphores, pipe sockets). Refuses an object "
                                    "whose holders are alive unless -f (they would keep an orphaned object that "
                                    "nobody can open again).")
    rm.add_argument("names", nargs="+", metavar="NAME")
    rm.add_argument("-f", "--force", action="store_true", help="remove even if in use; no error for missing names")
    rm.add_argument("-v", "--verbose", action="store_true", help="print each name removed")
    rm.set_defaults(func=cmd_rm)
    c = sub.add_parser("cleanup", help="remove segments whose holders have all exited")
    c.set_defaults(func=cmd_cleanup)
    d = sub.add_parser("demo", help="run the C++ game-side simulator and read it live from Python")
    d.add_argument("--seconds", type=float, default=3.0)
    d.add_argument("--rate", type=float, default=None, help="simulator writes per second (default 1000; frames: 60)")
    d.add_argument("--frames", action="store_true", help="1920x1080 RGBA frames through sharedstate.Frames instead")
    d.add_argument("--name", default=None, help="segment name (default: a unique one)")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `sharedstate ls | head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
