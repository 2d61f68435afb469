#!/usr/bin/env python3
"""sharedstate beside its peers, in one process tree and one run, with ratios.

    python bench/compare.py            # full run (~10 minutes on a 2-vCPU VM)
    python bench/compare.py --quick    # short run (< 2 minutes)
    python bench/compare.py --only access,roundtrip   # sections: access, cxx, roundtrip, throughput, torn, arrays, frames

Writes bench/results/compare.md, compare.json and roundtrip.png (see bench/README.md).
Absolute figures drift between runs and machines; the ratios, measured side by side in one
run, are the point. Peers that are not installed are reported as "skipped: <reason>".
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
import timeit
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import peers  # noqa: E402
from peers import Skip  # noqa: E402

CTX = mp.get_context("fork")
SECTIONS = ("access", "cxx", "roundtrip", "throughput", "torn", "arrays", "frames", "waitset", "bridge")


# ================================================================== plumbing
def cpus():
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def pin(cpu):
    try:
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        pass


def pin_all(cpus_):
    try:
        os.sched_setaffinity(0, set(cpus_))
    except (AttributeError, OSError):
        pass


class Alarm:
    """Raise TimeoutError in this (main) thread after `seconds`: a pure-Python spin loop
    or a blocking call in a peer must not hang the whole run."""

    def __init__(self, seconds, what):
        self.seconds, self.what = seconds, what

    def _fire(self, *_):
        raise TimeoutError(f"{self.what}: no progress for {self.seconds:.0f} s")

    def __enter__(self):
        self.old = signal.signal(signal.SIGALRM, self._fire)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc):
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.old)


def pct(sorted_vals, q):
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, int(round(q / 100 * (len(sorted_vals) - 1)))))
    return sorted_vals[k]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def _child(mech, role, n, go, ready, done, errq, cpu, resq):
    """The forked child: pin, wait for "go", open, say "ready", do its part."""
    try:
        pin(cpu)
        if not go.wait(60):
            raise TimeoutError("parent never said go")
        mech.child_open()
        ready.set()
        if role == "torn":
            mech.writer()          # runs until the parent kills it
        else:
            c0 = time.process_time()
            mech.child_main(n)
            resq.put(time.process_time() - c0)   # CPU seconds this side spent
            done.set()
        mech.child_close()
    except BaseException as e:  # report to the parent, which prints it
        errq.put(f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}")
        ready.set()
        done.set()


class Pair:
    """One parent/child pair around a mechanism (see peers.py for the hooks)."""

    def __init__(self, mech, role, n_child, cpu_parent, cpu_child, timeout):
        self.mech, self.role, self.timeout = mech, role, timeout
        self.go, self.ready, self.done = CTX.Event(), CTX.Event(), CTX.Event()
        self.errq = CTX.SimpleQueue()
        self.resq = CTX.SimpleQueue()
        pin(cpu_parent)
        mech.prepare()
        self.proc = CTX.Process(target=_child, args=(mech, role, n_child, self.go, self.ready, self.done,
                                                       self.errq, cpu_child, self.resq), daemon=True)
        self.proc.start()

    def __enter__(self):
        m = self.mech
        try:
            with Alarm(self.timeout, f"{type(m).__name__} open"):
                if m.parent_first:
                    m.parent_open()
                    self.go.set()
                else:
                    self.go.set()
                    m.parent_open()
                if not self.ready.wait(self.timeout):
                    raise TimeoutError("child never got ready")
            self.check()
        except BaseException:
            self.__exit__()
            raise
        return self

    def check(self):
        if not self.errq.empty():
            raise RuntimeError("child failed: " + self.errq.get())

    def wait_done(self):
        if not self.done.wait(self.timeout):
            raise TimeoutError("child did not finish")
        self.check()

    def child_cpu(self):
        return None if self.resq.empty() else self.resq.get()

    def __exit__(self, *exc):
        if self.role == "torn" and self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        try:
            self.mech.close()
        except Exception as e:
            log(f"  (close of {type(self.mech).__name__} failed: {e})")


def label_of(m, factory, key):
    if m is not None:
        return m.name
    return getattr(factory, "name", key) if isinstance(factory, type) else key


def make(factory):
    """Instantiate a peer; a missing package becomes a Skip."""
    try:
        return factory(), None
    except Skip as e:
        return None, str(e)


# ================================================================== sections
def run_access(cfg):
    """Single process, ns per call, interleaved rounds so that noise hits every case alike."""
    cases, cleanup = peers.state_access_cases()
    pin(cfg.cpu_parent)
    rows = {}
    live = []
    for key, label, group, kind, stmt, ns in cases:
        row = {"label": label, "group": group, "kind": kind, "stmt": stmt}
        if isinstance(ns, Skip):
            row["skipped"] = str(ns)
        else:
            try:
                t = timeit.Timer(stmt, globals=ns)
                t.timeit(number=1000)  # warm-up, and a syntax/behaviour check
                live.append((key, t))
                row["samples"] = []
            except Exception as e:
                row["skipped"] = f"failed: {type(e).__name__}: {e}"
        rows[key] = row
    n = cfg.access_number
    for r in range(cfg.access_rounds):
        for key, t in live:
            rows[key]["samples"].append(t.timeit(number=n) / n * 1e9)
    # Derived: read() of a value that changed since the last read (paired per round, since
    # the rounds are interleaved): (write + read) - write.
    if "samples" in rows.get("ss_write_read", {}) and "samples" in rows.get("ss_write", {}):
        d = [a - b for a, b in zip(rows["ss_write_read"]["samples"], rows["ss_write"]["samples"])]
        rows["ss_read_fresh"] = {"label": "sharedstate read() of a fresh value ((write+read) − write)",
                                 "group": "sharedstate", "kind": "read", "stmt": "derived", "samples": d}
        live.append(("ss_read_fresh", None))
    for key, _ in live:
        s = rows[key]["samples"]
        rows[key].update(median=statistics.median(s), min=min(s), max=max(s))
    cleanup()
    return {"number": n, "rounds": cfg.access_rounds, "rows": rows}


def run_cxx(cfg):
    """Build bench/cpp/bench_state.cpp with the C++ compiler here and run it."""
    src = HERE / "cpp" / "bench_state.cpp"
    inc = ROOT / "cpp" / "include"
    if not src.exists() or not inc.exists():
        return {"skipped": "no source checkout (bench/cpp/bench_state.cpp, cpp/include)"}
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if not cxx:
        return {"skipped": "no C++ compiler (set CXX)"}
    exe = cfg.out / "bench_state"
    cmd = [cxx, "-O2", "-std=c++17", "-DNDEBUG", f"-I{inc}", str(src), "-o", str(exe), "-pthread"]
    try:
        if not exe.exists() or exe.stat().st_mtime < max(src.stat().st_mtime, newest(inc)):
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
        args = [str(exe), "--rounds", str(cfg.cxx_rounds)]
        out = subprocess.run(["taskset", "-c", str(cfg.cpu_parent)] + args if shutil.which("taskset") else args,
                             check=True, capture_output=True, text=True, timeout=300)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        res["compiler"] = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
        res["command"] = " ".join(cmd)
        return res
    except subprocess.CalledProcessError as e:
        return {"skipped": f"C++ bench failed: {(e.stderr or '')[-400:]}"}
    except Exception as e:
        return {"skipped": f"C++ bench failed: {type(e).__name__}: {e}"}


def newest(d: Path) -> float:
    return max((p.stat().st_mtime for p in d.rglob("*.hpp")), default=0.0)


def run_roundtrip(cfg):
    rows = {}
    samples = {}
    mechs = []
    for key, factory in peers.ROUND_TRIPS:
        if cfg.mechs and key not in cfg.mechs:
            continue
        m, why = make(factory)
        rows[key] = {"label": label_of(m, factory, key), "group": getattr(m or factory, "group", "peer")}
        if why:
            rows[key]["skipped"] = why
        else:
            mechs.append((key, factory))
            samples[key] = []
            rows[key]["round_p50"] = []
    for r in range(cfg.rt_rounds):
        for key, factory in mechs:
            if "skipped" in rows[key]:
                continue
            m, _ = make(factory)
            log(f"  round trip {r + 1}/{cfg.rt_rounds}: {m.name}")
            try:
                with Pair(m, "rt", cfg.rt_warm + cfg.rt_n, cfg.cpu_parent, cfg.cpu_child, cfg.timeout) as p:
                    ping = m.make_ping()
                    got = []
                    pc = time.perf_counter_ns
                    with Alarm(cfg.timeout + cfg.rt_n * 0.01, m.name):
                        for i in range(1, cfg.rt_warm + 1):
                            ping(i)
                        for i in range(cfg.rt_warm + 1, cfg.rt_warm + cfg.rt_n + 1):
                            t0 = pc()
                            ping(i)
                            got.append(pc() - t0)
                    p.wait_done()
                us = [x / 1000 for x in got]
                samples[key].extend(us)
                rows[key]["round_p50"].append(statistics.median(us))
            except Exception as e:
                rows[key]["skipped"] = f"failed: {type(e).__name__}: {e}".splitlines()[0][:300]
                log(f"    {rows[key]['skipped']}")
    for key in list(samples):
        if "skipped" in rows[key] or not samples[key]:
            samples.pop(key, None)
            continue
        s = sorted(samples[key])
        rows[key].update(p50=pct(s, 50), p90=pct(s, 90), p99=pct(s, 99), min=s[0], n=len(s),
                         round_p50_min=min(rows[key]["round_p50"]), round_p50_max=max(rows[key]["round_p50"]))
    return {"rounds": cfg.rt_rounds, "n_per_round": cfg.rt_n, "warmup": cfg.rt_warm, "rows": rows}, samples


def run_throughput(cfg):
    rows = {}
    mechs = []
    for key, factory in peers.THROUGHPUTS:
        if cfg.mechs and key not in cfg.mechs:
            continue
        m, why = make(factory)
        rows[key] = {"label": label_of(m, factory, key), "group": getattr(m or factory, "group", "peer")}
        if why:
            rows[key]["skipped"] = why
        else:
            mechs.append((key, factory))
            rows[key]["rounds"] = []
    n = cfg.tp_n
    for r in range(cfg.tp_rounds):
        for key, factory in mechs:
            if "skipped" in rows[key]:
                continue
            m, _ = make(factory)
            log(f"  throughput {r + 1}/{cfg.tp_rounds}: {m.name}")
            try:
                with Pair(m, "tp", n, cfg.cpu_parent, cfg.cpu_child, cfg.timeout) as p:
                    with Alarm(cfg.timeout + n * 1e-4, m.name):
                        t0 = time.perf_counter()
                        c0 = time.process_time()
                        m.send_all(n)
                        sender_cpu = time.process_time() - c0
                        p.wait_done()
                        dt = time.perf_counter() - t0
                    receiver_cpu = p.child_cpu()
                rows[key]["rounds"].append(n / dt)
                rows[key].setdefault("sender_cpu_ns", []).append(sender_cpu / n * 1e9)
                if receiver_cpu is not None:
                    rows[key].setdefault("receiver_cpu_ns", []).append(receiver_cpu / n * 1e9)
            except Exception as e:
                rows[key]["skipped"] = f"failed: {type(e).__name__}: {e}".splitlines()[0][:300]
                log(f"    {rows[key]['skipped']}")
    for key, _ in mechs:
        rs = rows[key].get("rounds")
        if rs and "skipped" not in rows[key]:
            rows[key].update(median=statistics.median(rs), min=min(rs), max=max(rs))
            for side in ("sender_cpu_ns", "receiver_cpu_ns"):
                if rows[key].get(side):
                    rows[key][side + "_median"] = statistics.median(rows[key][side])
    return {"messages": n, "size": 64, "rounds": cfg.tp_rounds, "rows": rows}


def run_torn(cfg):
    rows = {}
    for key, factory in peers.TORN:
        if cfg.mechs and key not in cfg.mechs:
            continue
        m, why = make(factory)
        rows[key] = {"label": label_of(m, factory, key), "group": getattr(m or factory, "group", "peer")}
        if why:
            rows[key]["skipped"] = why
            continue
        log(f"  torn reads: {m.name}")
        try:
            with Pair(m, "torn", 0, cfg.cpu_parent, cfg.cpu_child, cfg.timeout):
                read = m.make_reader()
                with Alarm(cfg.timeout, m.name + " (writer not running?)"):
                    first = read()
                    while read() == first:   # the writer is really running
                        pass
                torn = changes = 0
                last = None
                t0 = time.perf_counter()
                for _ in range(cfg.torn_reads):
                    x, y = read()
                    if x != y:
                        torn += 1
                    if x != last:
                        changes += 1
                        last = x
                dt = time.perf_counter() - t0
                del read   # drop the reader's views before close() unmaps
            rows[key].update(reads=cfg.torn_reads, torn=torn, torn_pct=100.0 * torn / cfg.torn_reads,
                             changes=changes, seconds=dt)
        except Exception as e:
            rows[key]["skipped"] = f"failed: {type(e).__name__}: {e}".splitlines()[0][:300]
            log(f"    {rows[key]['skipped']}")
    return {"reads": cfg.torn_reads, "rows": rows}


# ================================================================== array payloads
ARRAY_SIZES = (64, 64 << 10, 1 << 20, 8 << 20)


def _array_rt_child(name, ack_name, n, cpu, go, errq):
    """B: wait for each write, take one consistent copy (read_into), check it, ack."""
    try:
        import numpy as np
        import sharedstate as ss
        pin(cpu)
        big, ack = ss.SharedState.open(name), ss.SharedState.open(ack_name)
        rec = np.zeros(1, big.layout.dtype)
        go.set()
        v = big.version
        for _ in range(n):
            v = big.wait(since=v, timeout=30)
            big.read_into(rec)
            d = rec["data"][0]
            if d[0] != d[-1] or d[0] != (int(rec["seq"][0]) & 255):
                raise AssertionError("torn copy")
            ack.write(seq=int(rec["seq"][0]))
        big.close()
        ack.close()
    except BaseException as e:
        errq.put(f"{type(e).__name__}: {e}")
        go.set()


def run_arrays(cfg):
    """Array payloads (issue 11): layout [("seq", "<u8"), ("data", "u1", (N,))], one process:
    write(data=arr), read_into(rec) and st.data against a raw numpy copy of the same bytes in
    stdlib shared memory (the floor); and across processes: write in A -> consistent copy
    (read_into) in B -> ack. Rounds interleave the cases; ratios pair figures of one round."""
    import numpy as np
    from multiprocessing import shared_memory
    ss = peers.sharedstate()
    pin(cfg.cpu_parent)
    out = {"sizes": {}, "rounds": cfg.arr_rounds}
    for size in ARRAY_SIZES:
        log(f"  arrays: {size} bytes")
        layout = ss.Layout([("seq", "<u8"), ("data", "u1", (size,))])
        name = peers.unique("arr")
        st = ss.SharedState.create(name, layout)
        shm = shared_memory.SharedMemory(create=True, size=layout.size)
        try:
            arr = np.full(size, 7, np.uint8)
            rec = np.zeros(1, layout.dtype)
            floor_dst = np.ndarray((size,), np.uint8, buffer=shm.buf, offset=8)
            priv = np.zeros(size, np.uint8)
            st.write(data=arr)
            floor_dst[:] = arr
            reps = max(5, min(20000, int(40e6 / max(size, 256))))
            cases = {
                "write": ("st.write(data=arr)", lambda: st.write(data=arr)),
                "write_floor": ("raw copy into shm (np.copyto)", lambda: np.copyto(floor_dst, arr)),
                "read_into": ("st.read_into(rec)", lambda: st.read_into(rec)),
                "read_floor": ("raw copy out of shm (np.copyto)", lambda: np.copyto(priv, floor_dst)),
                "field": ("st.data (a new read-only array)", lambda: st.data),
            }
            samples = {k: [] for k in cases}
            for _ in range(cfg.arr_rounds):
                for k, (_, fn) in cases.items():
                    t0 = time.perf_counter()
                    for _ in range(reps):
                        fn()
                    samples[k].append((time.perf_counter() - t0) / reps * 1e6)
            rows = {k: {"label": cases[k][0], "samples": v, "median": statistics.median(v), "min": min(v)}
                    for k, v in samples.items()}
            ratios = {
                "write": statistics.median(a / b for a, b in zip(samples["write"], samples["write_floor"])),
                "read_into": statistics.median(a / b for a, b in zip(samples["read_into"], samples["read_floor"])),
                "write_min": rows["write"]["min"] / rows["write_floor"]["min"],
                "read_into_min": rows["read_into"]["min"] / rows["read_floor"]["min"],
            }
            # Cross-process round trip.
            n = max(10, min(2000, int(cfg.arr_rt_bytes / max(size, 1024))))
            ack_name = peers.unique("arrack")
            ack = ss.SharedState.create(ack_name, ss.Layout([("seq", "<u8")]))
            go, errq = CTX.Event(), CTX.SimpleQueue()
            proc = CTX.Process(target=_array_rt_child, args=(name, ack_name, n + 5, cfg.cpu_child, go, errq), daemon=True)
            proc.start()
            rt = []
            try:
                if not go.wait(30) or not errq.empty():
                    raise RuntimeError("child: " + (errq.get() if not errq.empty() else "never ready"))
                with Alarm(cfg.timeout + n * 0.05, f"array round trip {size}"):
                    for i in range(1, n + 6):
                        arr.fill(i & 255)
                        t0 = time.perf_counter_ns()
                        av = ack.version
                        st.write(seq=i, data=arr)
                        while ack.version == av:
                            ack.wait(since=av, timeout=30)
                        if i > 5:
                            rt.append((time.perf_counter_ns() - t0) / 1000)
                proc.join(30)
                if not errq.empty():
                    raise RuntimeError("child: " + errq.get())
                rs = sorted(rt)
                rows["roundtrip"] = {"label": "write in A -> read_into in B -> ack", "n": len(rs),
                                     "p50": pct(rs, 50), "p90": pct(rs, 90), "min": rs[0]}
            except Exception as e:
                rows["roundtrip"] = {"label": "write in A -> read_into in B -> ack",
                                     "skipped": f"failed: {type(e).__name__}: {e}"[:300]}
            finally:
                if proc.is_alive():
                    proc.kill()
                proc.join(5)
                ack.close()
            out["sizes"][str(size)] = {"reps": reps, "rows": rows, "ratios": ratios}
        finally:
            del floor_dst
            st.close()
            shm.close()
            shm.unlink()
    return out


# ================================================================== machine
def machine():
    info = {"python": sys.version.split()[0], "implementation": platform.python_implementation(),
            "kernel": platform.release(), "platform": platform.platform(), "cpus_online": os.cpu_count(),
            "affinity": cpus(), "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor") as f:
            info["governor"] = f.read().strip()
    except OSError:
        pass
    try:
        virt = subprocess.run(["systemd-detect-virt"], capture_output=True, text=True, timeout=5).stdout.strip()
        if virt:
            info["virtualization"] = virt
    except Exception:
        pass
    versions = {}
    for mod, attr in [("sharedstate", "__version__"), ("numpy", "__version__"), ("zmq", "__version__"),
                      ("posix_ipc", "VERSION"), ("matplotlib", "__version__")]:
        try:
            versions[mod] = str(getattr(__import__(mod), attr))
        except Exception as e:
            versions[mod] = f"not installed ({type(e).__name__})"
    try:
        import zmq
        versions["libzmq"] = zmq.zmq_version()
    except Exception:
        pass
    try:
        from importlib.metadata import version
        versions["iceoryx2"] = version("iceoryx2")
    except Exception:
        versions["iceoryx2"] = "not installed"
    info["versions"] = versions
    try:
        info["git"] = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                                     capture_output=True, text=True, timeout=5).stdout.strip()
    except Exception:
        pass
    return info


# ================================================================== ratios, targets, report
def best(rows, keys=None, kind=None, higher=False, field="median"):
    cand = [(k, r) for k, r in rows.items() if r.get("group") == "peer" and field in r
            and (kind is None or r.get("kind") == kind) and (keys is None or k in keys)]
    if not cand:
        return None, None
    k, r = (max if higher else min)(cand, key=lambda kr: kr[1][field])
    return k, r[field]


def val(sec, key, field):
    r = sec.get("rows", {}).get(key, {}) if sec else {}
    return r.get(field)


def targets(res):
    """PASS/MISS per target. `measured` is the median over rounds of the ratio within each
    round (the rounds are interleaved, so a ratio pairs figures taken seconds apart: that
    survives a machine whose load changes during the run); `pooled` is the ratio of the
    figures over all rounds."""
    acc, rt, tp, cx = res.get("access"), res.get("roundtrip"), res.get("throughput"), res.get("cxx")
    out = []

    def add(name, sec, a, b, field, per_round, limit, ok_if, ref):
        pooled = ratio(val(sec, a, field), val(sec, b, field))
        measured = paired(sec, a, b, per_round)
        if measured is None:
            measured = pooled
        row = {"target": name, "measured": measured, "pooled": pooled, "limit": f"{ok_if} {limit}", "reference": ref}
        if measured is None:
            row["status"] = "N/A"
        else:
            row["status"] = "PASS" if (measured <= limit if ok_if == "<=" else measured >= limit) else "MISS"
        out.append(row)

    add("read() vs torn Struct.unpack_from read (value unchanged: cached snapshot)", acc, "ss_read", "struct_read",
        "median", "samples", 1.0, "<=", "shm + Struct.unpack_from")
    add("read() of a fresh value vs torn Struct.unpack_from read", acc, "ss_read_fresh", "struct_read",
        "median", "samples", 1.0, "<=", "shm + Struct.unpack_from")
    add("field read st.x vs ctypes .x", acc, "ss_field_read", "ctypes_field_read", "median", "samples",
        1.5, "<=", "ctypes from_buffer .x")
    add("state round trip p50 vs pure-Python spin handoff p50", rt, "ss_state", "spin", "p50", "round_p50",
        2.0, "<=", "pure-Python shm spin handoff")
    add("multiprocessing.Pipe p50 / state round trip p50 (times faster)", rt, "mp_pipe", "ss_state", "p50",
        "round_p50", 40.0, ">=", "multiprocessing.Pipe")
    add("Pipe round trip p50 vs socketpair SEQPACKET p50", rt, "ss_pipe", "seqpacket", "p50", "round_p50",
        1.1, "<=", "socketpair SOCK_SEQPACKET")
    add("Queue throughput / pyzmq PUSH/PULL throughput", tp, "ss_queue", "zmq_pushpull", "median", "rounds",
        5.0, ">=", "pyzmq PUSH/PULL ipc")
    # A contention-free estimate beside it: what each mechanism's slower side costs in CPU per
    # message (on a shared machine msgs/s also measures who got the CPUs).
    def cpu_bound(key):
        r = (tp or {}).get("rows", {}).get(key, {})
        sides = [r.get("sender_cpu_ns_median"), r.get("receiver_cpu_ns_median")]
        sides = [x for x in sides if x]
        return max(sides) if sides and "skipped" not in r else None
    est = ratio(cpu_bound("zmq_pushpull"), cpu_bound("ss_queue"))
    out.append({"target": "(info) Queue / pyzmq by CPU ns per message of the slower side", "measured": est,
                "pooled": None, "limit": ">= 5.0", "reference": "pyzmq PUSH/PULL ipc",
                "status": "N/A" if est is None else ("info: would PASS" if est >= 5.0 else "info: would MISS")})
    ar = res.get("arrays")
    for size, sec in (ar or {}).get("sizes", {}).items():
        for key, limit, what in (("write", 2.5, "write(data=ndarray)"), ("read_into", 1.3, "read_into(rec)")):
            x = sec["ratios"].get(key)
            out.append({"target": f"{what} vs one raw numpy copy, {_size_text(int(size))}", "measured": x,
                        "pooled": sec["ratios"].get(key + "_min"), "limit": f"<= {limit}", "reference": "raw copy",
                        "status": "N/A" if x is None else ("PASS" if x <= limit else "MISS")})
    for k, r in ((cx or {}).get("ratios") or {}).items():
        out.append({"target": f"C++ {k}", "measured": r.get("measured"), "pooled": r.get("min_ratio"),
                    "limit": f"<= {r.get('limit')}", "reference": "C++",
                    "status": "PASS" if r.get("measured", 1e9) <= r.get("limit", 0) else "MISS"})
    cxx_read = cx.get("read_ns") if cx and "skipped" not in cx else None
    out.append({"target": "C++ SharedState<Controller>::read() ns", "measured": cxx_read, "pooled": None,
                "limit": "<= 5.0", "reference": "absolute",
                "status": "N/A" if cxx_read is None else ("PASS" if cxx_read <= 5.0 else "MISS")})
    wsr = res.get("waitset")
    for name, key, limit, ref in (
            ("WaitSet of 16 states wake latency vs a single st.wait()", "waitset16_over_single", 1.5, "st.wait()"),
            ("await st.wait_async() round trip vs a thread in st.wait() + call_soon_threadsafe",
             "aio_over_thread_loop", 2.0, "thread + call_soon_threadsafe")):
        m = wsr.get(key) if wsr else None
        out.append({"target": name, "measured": m, "pooled": None, "limit": f"<= {limit}", "reference": ref,
                    "status": "N/A" if m is None else ("PASS" if m <= limit else "MISS")})
    return out


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def paired(sec, a, b, field):
    """Median over rounds of a's figure / b's figure in the same round."""
    ra, rb = val(sec, a, field), val(sec, b, field)
    if not ra or not rb or "skipped" in sec["rows"][a] or "skipped" in sec["rows"][b] or len(ra) != len(rb):
        return None
    return statistics.median(x / y for x, y in zip(ra, rb) if y)


def fmt(x, unit=""):
    if x is None:
        return "–"
    if isinstance(x, str):
        return x
    if abs(x) >= 1e6:
        return f"{x / 1e6:.2f} M{unit}"
    if abs(x) >= 100:
        return f"{x:.0f}{unit}"
    if abs(x) >= 10:
        return f"{x:.1f}{unit}"
    return f"{x:.2f}{unit}"


def markdown(res):
    m = res["machine"]
    L = [f"# sharedstate vs peers — `{res['command']}`", "",
         f"{res['started']}, {res['seconds']:.0f} s. Machine: {m.get('cpu', '?')}, {m['cpus_online']} CPUs "
         f"(affinity {m['affinity']}), kernel {m['kernel']}, {m.get('virtualization', '')} "
         f"Python {m['python']}; load average at start {fmt_load(m.get('loadavg_start'))}, "
         f"at end {fmt_load(m.get('loadavg_end'))}.",
         "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + (f"; git {m['git']}" if m.get("git") else "") + ".",
         f"Parent pinned to CPU {res['config']['cpu_parent']}, child to CPU {res['config']['cpu_child']}.", ""]
    L += ["## Targets", "", "| target | measured | pooled | limit | status |", "| --- | ---: | ---: | ---: | --- |"]
    for t in res["targets"]:
        L.append(f"| {t['target']} | {fmt(t['measured'])} | {fmt(t['pooled'])} | {t['limit']} | **{t['status']}** |")
    L += ["", "measured: the median over rounds of the ratio within each round (rounds interleave the "
          "mechanisms, so each ratio pairs figures taken seconds apart); pooled: the ratio of the figures over "
          "all rounds (the tables below); for the array-payload and C++ ratio rows, the ratio of the fastest "
          "rounds (min/min).", ""]

    acc = res.get("access")
    if acc:
        L += [f"## State access, one process (ns per call; median of {acc['rounds']} interleaved rounds of "
              f"{acc['number']} calls, [min–max])", "",
              "| how | kind | ns | spread | x best peer of its kind |", "| --- | --- | ---: | ---: | ---: |"]
        for key, r in acc["rows"].items():
            if "skipped" in r:
                L.append(f"| {r['label']} | {r['kind']} | skipped: {r['skipped']} | | |")
                continue
            _, b = best(acc["rows"], kind=r["kind"]) if r["kind"] != "info" else (None, None)
            ratio = f"{r['median'] / b:.2f}x" if b else "–"
            name = f"**{r['label']}**" if r["group"] == "sharedstate" else r["label"]
            L.append(f"| {name} | {r['kind']} | {fmt(r['median'])} | [{fmt(r['min'])}–{fmt(r['max'])}] | {ratio} |")
        L.append("")

    cx = res.get("cxx")
    if cx:
        L += ["## C++ (ns per call, 12-byte controller struct and a 1 MiB payload, one process)", ""]
        if "skipped" in cx:
            L += [f"skipped: {cx['skipped']}", ""]
        else:
            L += ["| operation | ns (median) | spread |", "| --- | ---: | ---: |"]
            for k, r in cx["rows"].items():
                L.append(f"| {k} | {fmt(r['median'])} | [{fmt(r['min'])}–{fmt(r['max'])}] |")
            L += ["", f"Compiler: {cx.get('compiler', '?')}; `{cx.get('command', '')}`", ""]

    ar = res.get("arrays")
    if ar:
        L += [f"## Array payloads (µs per call, median of {ar['rounds']} interleaved rounds; layout "
              "`[(\"seq\", \"<u8\"), (\"data\", \"u1\", (N,))]`)", "",
              "| payload | `write(data=arr)` | raw copy | ratio (min/min) | `read_into(rec)` | raw copy | ratio (min/min) "
              "| `st.data` | write in A → consistent copy in B → ack (p50) |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for size, sec in ar["sizes"].items():
            r, q = sec["rows"], sec["ratios"]
            rt_ = r.get("roundtrip", {})
            rtt = fmt(rt_.get("p50")) if "p50" in rt_ else rt_.get("skipped", "–")
            L.append(f"| {_size_text(int(size))} | {fmt(r['write']['median'])} | {fmt(r['write_floor']['median'])} | "
                     f"{q['write']:.2f}x ({q['write_min']:.2f}x) | {fmt(r['read_into']['median'])} | "
                     f"{fmt(r['read_floor']['median'])} | {q['read_into']:.2f}x ({q['read_into_min']:.2f}x) | "
                     f"{fmt(r['field']['median'])} | {rtt} |")
        L += ["", "ratio: the median over rounds of the ratio within each round; min/min: the fastest round of "
              "each (the least disturbed on a busy machine). Targets: write ≤ 2.5x (the latch stores two copies), "
              "read_into ≤ 1.3x.", ""]

    rt = res.get("roundtrip")
    if rt:
        L += [f"## Cross-process round trip, 16-byte message (µs; {rt['rounds']} rounds x {rt['n_per_round']} "
              f"after {rt['warmup']} warm-up, each round a fresh pair of processes)", "",
              "| mechanism | p50 | p90 | p99 | p50 per round | x best peer (p50) |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
        _, b = best(rt["rows"], field="p50")
        for key, r in rt["rows"].items():
            name = f"**{r['label']}**" if r["group"] == "sharedstate" else r["label"]
            if "skipped" in r:
                L.append(f"| {name} | skipped: {r['skipped']} | | | | |")
                continue
            L.append(f"| {name} | {fmt(r['p50'])} | {fmt(r['p90'])} | {fmt(r['p99'])} | "
                     f"{fmt(r['round_p50_min'])}–{fmt(r['round_p50_max'])} | {r['p50'] / b:.2f}x |" if b else "")
        L.append("")

    tp = res.get("throughput")
    if tp:
        L += [f"## One-way throughput, {tp['size']}-byte messages (msgs/s; median of {tp['rounds']} rounds of "
              f"{tp['messages']})", "",
              "| mechanism | msgs/s | spread | x best peer | CPU ns/msg sender / receiver |",
              "| --- | ---: | ---: | ---: | ---: |"]
        _, b = best(tp["rows"], higher=True)
        for key, r in tp["rows"].items():
            name = f"**{r['label']}**" if r["group"] == "sharedstate" else r["label"]
            if "skipped" in r:
                L.append(f"| {name} | skipped: {r['skipped']} | | | |")
                continue
            cpu = f"{fmt(r.get('sender_cpu_ns_median'))} / {fmt(r.get('receiver_cpu_ns_median'))}"
            L.append(f"| {name} | {fmt(r['median'])} | [{fmt(r['min'])}–{fmt(r['max'])}] | "
                     f"{r['median'] / b:.2f}x | {cpu} |" if b else "")
        L += ["", "CPU ns/msg: CPU time each side spent per message (process_time). On a machine shared with other "
              "work, msgs/s falls when the two processes do not get their CPUs; CPU ns/msg much lower than "
              "1e9/(msgs/s) says so. Spinning receivers count their spin as CPU.", ""]

    tr = res.get("torn")
    if tr:
        L += [f"## Torn reads under a full-speed writer (x = y = i; {tr['reads']} reads; writer on the other CPU)", "",
              "| writer / reader | torn reads | % | value changes seen |", "| --- | ---: | ---: | ---: |"]
        for key, r in tr["rows"].items():
            name = f"**{r['label']}**" if r["group"] == "sharedstate" else r["label"]
            if "skipped" in r:
                L.append(f"| {name} | skipped: {r['skipped']} | | |")
                continue
            L.append(f"| {name} | {r['torn']} | {r['torn_pct']:.2f} | {r['changes']} |")
        L += ["", "\"value changes seen\" shows the writer really ran concurrently; on a shared 2-vCPU VM it may not "
              "have run for the whole read loop.", ""]
    if res.get("frames"):
        import frames_bench
        L += [frames_bench.markdown(res["frames"], "frames.png" if res.get("frames_plot") else None), ""]
    if res.get("bridge"):
        from bench_bridge import markdown as bridge_markdown
        L += bridge_markdown(res["bridge"])
    if res.get("plot"):
        L += [f"![round-trip latency distributions]({Path(res['plot']).name})", ""]
    elif res.get("plot_note"):
        L += [f"Plot: {res['plot_note']}", ""]
    return "\n".join(L)


def _size_text(n):
    return f"{n >> 20} MiB" if n >= 1 << 20 else (f"{n >> 10} KiB" if n >= 1 << 10 else f"{n} B")


def fmt_load(la):
    return "?" if not la else "/".join(f"{x:.1f}" for x in la)


def plot(samples, rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as e:
        return None, f"skipped: matplotlib not installed ({type(e).__name__})"
    fig, ax = plt.subplots(figsize=(9, 5.5))
    order = sorted(samples, key=lambda k: rows[k]["p50"])
    colors = plt.cm.tab20.colors  # 20 distinct colours: no two mechanisms share one
    for idx, key in enumerate(order):
        s = sorted(samples[key])
        n = len(s)
        ys = [100.0 * (i + 1) / n for i in range(n)]
        style = "-" if rows[key]["group"] == "sharedstate" else "--"
        ax.plot(s, ys, style, color=colors[(2 * idx) % 20 + (idx // 10) % 2],
                lw=2.2 if rows[key]["group"] == "sharedstate" else 1.2,
                label=f"{rows[key]['label']} (p50 {fmt(rows[key]['p50'])} µs)")
    ax.set_xscale("log")
    ax.set_xlabel("round trip, µs (log scale)")
    ax.set_ylabel("percent of round trips ≤ x")
    ax.set_ylim(0, 100)
    from frames_bench import finish_plot
    return finish_plot(plt, fig, ax, "Cross-process round trip, 16 B, processes pinned to different CPUs", path,
                       "lower right", 7.5)


BEGIN, END = "<!-- results:begin (written by compare.py --readme) -->", "<!-- results:end -->"


def update_readme(md, res):
    """Replace the Results section of bench/README.md with this run (and commit-able plot)."""
    readme = HERE / "README.md"
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        log("bench/README.md has no results markers; not updated")
        return
    body = md.split("\n", 1)[1]  # drop the H1 title
    body = body.replace("## ", "### ")
    if res.get("plot"):
        shutil.copyfile(res["plot"], HERE / "roundtrip.png")
        body = body.replace(f"]({Path(res['plot']).name})", "](roundtrip.png)")
    if res.get("frames_plot"):
        shutil.copyfile(res["frames_plot"], HERE / "frames.png")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    readme.write_text(f"{head}{BEGIN}\nReproduce with `{res['command']}`.\n{body}\n{END}{tail}")
    log(f"updated {readme}")


# ================================================================== main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short run (< 2 minutes)")
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections: " + ", ".join(SECTIONS))
    ap.add_argument("--out", default=str(HERE / "results"), help="output folder (default bench/results)")
    ap.add_argument("--cpus", default=None, help="parent,child CPU numbers (default: the first two allowed)")
    ap.add_argument("--readme", action="store_true",
                    help="also put this run's tables into bench/README.md and its plots into bench/roundtrip.png, bench/frames.png")
    ap.add_argument("--mechs", default=None,
                    help="only these cross-process mechanisms, comma-separated keys (e.g. ss_pipe,seqpacket)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds of every cross-process section")
    ap.add_argument("--n", type=int, default=None, help="timed round trips per round")
    cfg = ap.parse_args(argv)
    only = [s.strip() for s in cfg.only.split(",") if s.strip()]
    bad = [s for s in only if s not in SECTIONS]
    if bad:
        ap.error(f"unknown section(s) {bad}; choose from {SECTIONS}")
    try:  # every section measures the installed package: say so now, not mid-run
        peers.sharedstate()
    except Skip as e:
        ap.exit(2, f"compare.py: {e}; install it first: pip install '.[bench]' "
                   "(or scripts/bench.sh, which makes a venv with it)\n")
    cfg.out = Path(cfg.out)
    cfg.out.mkdir(parents=True, exist_ok=True)
    allowed = cpus()
    if cfg.cpus:
        cfg.cpu_parent, cfg.cpu_child = (int(x) for x in cfg.cpus.split(","))
    else:
        cfg.cpu_parent = allowed[0]
        cfg.cpu_child = allowed[1] if len(allowed) > 1 else allowed[0]
    q = cfg.quick
    cfg.access_rounds, cfg.access_number = (15, 40000) if q else (31, 100000)
    cfg.cxx_rounds = 7 if q else 21
    cfg.rt_rounds, cfg.rt_n, cfg.rt_warm = (4, 2000, 500) if q else (10, 5000, 1000)
    cfg.tp_rounds, cfg.tp_n = (3, 100000) if q else (5, 300000)
    cfg.torn_reads = 1000000 if q else 5000000
    cfg.arr_rounds = 5 if q else 11
    cfg.arr_rt_bytes = (64 << 20) if q else (256 << 20)  # bytes moved per size in the array round trip
    cfg.timeout = 30.0
    if cfg.rounds:
        cfg.rt_rounds = cfg.tp_rounds = cfg.rounds
    if cfg.n:
        cfg.rt_n = cfg.n
    cfg.mechs = set(cfg.mechs.split(",")) if cfg.mechs else None

    command = " ".join(["python bench/compare.py"] + [a for a in (sys.argv[1:] if argv is None else argv) if a != "--readme"])
    res = {"command": command, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(),
           "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(cfg).items()}}
    t0 = time.time()
    samples = {}
    if "access" in only:
        log("state access ...")
        res["access"] = run_access(cfg)
    if "cxx" in only:
        log("C++ ...")
        res["cxx"] = run_cxx(cfg)
    if "roundtrip" in only:
        log("round trips ...")
        res["roundtrip"], samples = run_roundtrip(cfg)
    if "throughput" in only:
        log("throughput ...")
        res["throughput"] = run_throughput(cfg)
    if "torn" in only:
        log("torn reads ...")
        res["torn"] = run_torn(cfg)
    if "arrays" in only:
        log("array payloads ...")
        res["arrays"] = run_arrays(cfg)
    if "frames" in only:
        log("frames ...")
        import frames_bench  # bench/frames_bench.py: commit -> numpy array, 64 B .. 32 MiB
        res["frames"] = frames_bench.run(quick=q, cpu_parent=cfg.cpu_parent, cpu_child=cfg.cpu_child, log=log)
    if "waitset" in only:  # WaitSet and asyncio wake latency (bench/waitset_bench.py)
        log("WaitSet / asyncio wake latency ...")
        sys.path.insert(0, str(HERE))
        import waitset_bench
        n_ws, rounds_ws = (1000, 2) if cfg.quick else (3000, 3)
        res["waitset"] = waitset_bench.run(n_ws, rounds_ws)
        log(waitset_bench.report(res["waitset"], n_ws, rounds_ws))
    if "bridge" in only:
        log("Zenoh bridge ...")
        from bench_bridge import run_bridge
        # Unpinned: earlier sections pin this process to one CPU, and every bridge process
        # (and its Zenoh threads) would inherit that one CPU.
        pin_all(allowed)
        res["bridge"] = run_bridge(cfg.quick)
    pin_all(allowed)
    res["seconds"] = time.time() - t0
    res["machine"]["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    res["targets"] = targets(res)
    if res.get("frames"):
        import frames_bench
        res["targets"] += [dict(t, pooled=None, reference="frames section") for t in frames_bench.targets(res["frames"])]
    if samples:
        res["plot"], res["plot_note"] = plot(samples, res["roundtrip"]["rows"], cfg.out / "roundtrip.png")
    if res.get("frames"):
        res["frames_plot"], _ = frames_bench.plot(res["frames"], cfg.out / "frames.png")
    md = markdown(res)
    (cfg.out / "compare.md").write_text(md + "\n")
    (cfg.out / "compare.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(md)
    if cfg.readme:
        update_readme(md, res)
    log(f"\nwrote {cfg.out / 'compare.md'}, {cfg.out / 'compare.json'}" + (f", {res['plot']}" if res.get("plot") else ""))
    return 0


def main_clean(argv=None):
    """main(), then remove what the peers (zenoh shared memory, iceoryx2) left in /dev/shm."""
    from bench_bridge import peer_leftovers, remove_new_leftovers
    before = peer_leftovers()
    try:
        return main(argv)
    finally:
        remove_new_leftovers(before)


if __name__ == "__main__":
    sys.exit(main_clean())
