"""The command line: ``python -m sharedstate {ls,inspect,watch,rm,cleanup,demo}``.

This module is presentation only: tables, JSON and ``watch``'s redraw. What it shows about a
segment comes from the compiled core's read-only look (``_core.Peek`` / ``_core.peek``,
cpp/include/sharedstate/inspect.hpp), which validates the header with the same code as
``open()`` and reads the value with the segment's own seqlock, so it is never torn and a
header that fails validation is reported, never used. No byte of docs/FORMAT.md is
parsed here.

Looking never changes lifetime. On Linux the look maps the segment read-only and takes no
holder lock, so ``ls``, ``inspect`` and ``watch`` neither keep a segment alive nor remove
one when they exit; holders are found in /proc/locks (every holder keeps a shared flock).
On Windows named objects cannot be listed; ``inspect`` and ``watch`` open the object (and
so hold it while they run, which is how Windows lifetime works anyway).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, TextIO, Tuple

import numpy as np

from . import _core
from ._layout import Layout

SHM_DIR = "/dev/shm"
LINUX = sys.platform.startswith("linux")

#: Byte fields longer than this are shown by size, not content (a 1 GiB payload stays readable).
SHOW_BYTES = 4096


class Problem(Exception):
    """A segment whose bytes fail validation (reported, never used)."""


class Gone(Exception):
    """The object being watched was removed (its last holder closed it)."""


# ---------------------------------------------------------------- values, for showing
def decode_value(d: Dict[str, Any]) -> Dict[str, Any]:
    """The fields of a described state's payload copy as Python values (numpy does the
    conversion, from the layout the core validated)."""
    fields: Sequence[Dict[str, Any]] = d["layout"]
    payload: bytes = d["payload"]
    mv = memoryview(payload)
    numeric = [f for f in fields if f["kind"] not in ("S", "V")]
    rec = None
    if numeric:
        layout = Layout._make([(f["name"], f["kind"], f["itemsize"], f["offset"], f["count"]) for f in numeric],
                              len(payload), int(d.get("payload_align") or 1))
        rec = np.frombuffer(payload, dtype=layout.dtype, count=1)[0]
    out: Dict[str, Any] = {}
    for f in fields:
        name, off, count = f["name"], f["offset"], f["count"]
        if f["kind"] in ("S", "V"):
            if count > SHOW_BYTES:
                out[name] = f"<{count} bytes>"
            else:
                raw = bytes(mv[off:off + count])
                out[name] = raw.split(b"\0", 1)[0] if f["kind"] == "S" else raw
        else:
            assert rec is not None
            out[name] = rec[name].tolist()
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


def _iso(ns: Optional[int]) -> Optional[str]:
    if ns is None:
        return None
    try:
        return _dt.datetime.fromtimestamp(ns / 1e9, _dt.timezone.utc).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return None


# ---------------------------------------------------------------- describing one object
def _present(d: Dict[str, Any], *, value: bool) -> Dict[str, Any]:
    """The core's description, shaped for showing (ISO time, octal mode, hex bytes, values)."""
    d = dict(d)
    d.pop("holders_known", None)
    d["mode"] = oct(d["mode"])
    if "first_bytes" in d:
        d["first_bytes"] = d["first_bytes"].hex()
    if "created_unix_ns" in d:
        d["created"] = _iso(d.pop("created_unix_ns"))
    payload = d.pop("payload", None)
    if value and payload is not None and "layout" in d:
        d["value"] = decode_value(dict(d, payload=payload))
    return d


def describe(name: str, *, value: bool = True) -> Dict[str, Any]:
    """Everything ls/inspect show about the segment NAME. Raises FileNotFoundError."""
    return _present(_core.peek(name, payload=value), value=value)


def _describe_opened(name: str) -> Dict[str, Any]:
    """What inspect shows on Windows (no /dev/shm): the same look, which there opens the
    object (as its holder for the moment)."""
    return describe(name)


def _file_holders(path: str) -> Tuple[bool, List[int]]:
    os.stat(path)  # FileNotFoundError if missing
    pids = _core.file_holders(path)
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


MAILSLOT_SUFFIX = _core.MAILSLOT_SEGMENT_SUFFIX  # Linux: a mailslot is a queue segment NAME.mailslot (mailslot.hpp)


def describe_mailslot(name: str) -> Dict[str, Any]:
    try:
        return _as_mailslot(describe(name + MAILSLOT_SUFFIX))
    except ValueError:  # NAME + the suffix is longer than a name may be: no such mailslot
        raise FileNotFoundError(name) from None


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
        except (OSError, ValueError):  # gone meanwhile, not readable, or a name sharedstate cannot make
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
        elif "layout" in d:  # a state (or any kind whose payload is self-described)
            layout = layout_text(d["layout"]) + (" (persistent)" if d.get("persistent") else "")
        elif d["kind"] in ("queue", "mailslot") and "capacity" in d:
            layout = (f"capacity {d['capacity']}, max message {d['max_message']}, {d['pending']} pending"
                      + (" (persistent)" if d.get("persistent") else ""))
        elif d["kind"] == "frames" and "shape" in d:
            layout = (f"frames {d['shape']} of {d['element']}, readers {d['readers']}, {d['pins_held']} pinned"
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
    for key, label in _LABELS:
        if key in d and d[key] is not None:
            print(f"  {label:<15} {d[key]}", file=out)
    # Facts of a kind this table does not list (a new kind's sizes, counters, owners): as they come.
    for key, v in d.items():
        if key in _SHOWN or v is None:
            continue
        if isinstance(v, dict) and "pid" in v:
            print(f"  {key.replace('_', ' '):<15} {_owner_text(v, 'none')}", file=out)
        elif isinstance(v, (bool, int, float, str)):
            print(f"  {key.replace('_', ' '):<15} {v}", file=out)
    if d["kind"] in ("queue", "mailslot") and "capacity" in d:
        print(f"  consumer        {_owner_text(d.get('consumer'), 'none')}", file=out)
    if "writer_lock" in d or "last_writer" in d:
        wl, lw = d.get("writer_lock"), d.get("last_writer")
        print(f"  writer lock     {_owner_text(wl, 'free')}", file=out)
        print(f"  last writer     {_owner_text(lw, 'none yet')}", file=out)
    if "layout" in d:
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


_LABELS = (("format_version", "format"), ("persistent", "persistent"), ("creator_pid", "creator pid"),
           ("created", "created"), ("header_size", "header size"), ("payload_size", "payload size"),
           ("payload_align", "payload align"), ("slot_stride", "slot stride"),
           ("segment_size", "segment size"), ("version", "version"), ("capacity", "capacity"),
           ("max_message", "max message"), ("pending", "pending"), ("used_bytes", "used bytes"),
           ("puts", "puts"), ("gets", "gets"), ("skipped", "skipped"), ("recoveries", "recoveries"),
           ("waiters", "waiters"))
_SHOWN = {k for k, _ in _LABELS} | {"name", "kind", "size", "mode", "problem", "holders_alive", "holder_pids",
                                    "layout", "value", "first_bytes", "path", "writer_lock", "last_writer",
                                    "consumer"}


def _owner_text(o: Optional[Dict[str, Any]], none: str) -> str:
    if o is None:
        return none
    alive = o.get("alive")
    return f"pid {o['pid']}" + ("" if alive is None else " (alive)" if alive else " (dead: the next writer takes over)")


def _watch_frames(name: str, interval: float) -> Iterator[Tuple[int, Dict[str, Any], List[Dict[str, Any]]]]:
    """Yields (version, values, fields) every `interval` seconds."""
    with _core.Peek(name) as p:
        while True:
            d = p.describe()
            if d["problem"]:
                raise Problem(d["problem"])
            if d["kind"] != "state":
                what = "has no sharedstate header" if d["kind"] == "other" else f"is a {d['kind']}"
                raise Problem(f"{what}; watch shows a state's fields (try 'inspect')")
            yield d["version"], decode_value(d), d["layout"]
            time.sleep(interval)
            if not p.still_named():  # still the object we are showing? (its last holder may have removed it)
                raise Gone(name)


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


LOOKING = ("Looking never changes lifetime: on Linux ls/inspect/watch map a segment read-only "
           "and take no holder lock, so they neither keep a segment alive nor "
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
    from . import bridge
    bridge.add_cli(sub)
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
